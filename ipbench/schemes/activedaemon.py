"""ActiveDaemon (NDSS 2024): a per-user invisible token, BCH identities, data poisoning.

Stage 1 trains a StegaStamp-style token generator on the owner's images at the dataset's own
resolution (its own cached stage). Stage 2 poisons the owner's training split: a fraction
gamma becomes G_a(x, s) with random identity strings and true labels, the rest keeps clean
images with labels from the strategy G_l. A user's credential is their identity string; any
new string works without retraining, and the service can decode who sent a query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from annotated_types import Ge, Gt, Interval

from ipbench.core.config import content_hash
from ipbench.core.errors import IpbenchError
from ipbench.core.registry import schemes
from ipbench.metrics.image_quality import lpips_ready
from ipbench.ml.images import quantize, to_uint8
from ipbench.ml.models import ModelSpec
from ipbench.plugin.capabilities import CredentialForging, SharedStage, StealthViews
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Credential, Protected
from ipbench.plugin.evaluate import eval_users
from ipbench.schemes._poisoning.poisoning import PoisonConfig
from ipbench.schemes._poisoning.token_scheme import Prepared, TokenScheme
from ipbench.schemes._poisoning.tokens.bch import IdentityCodec, random_identities
from ipbench.schemes._poisoning.tokens.forgeries import KINDS as FORGERY_KINDS
from ipbench.schemes._poisoning.tokens.forgeries import POOL, REFERENCE_SIZE, forgery
from ipbench.schemes._poisoning.tokens.generator import (
    TokenConfig,
    TokenGenerator,
    train_token_generator,
)
from ipbench.schemes._poisoning.tokens.noise import NoiseConfig
from ipbench.schemes._poisoning.tokens.trajectory import trajectory_config
from ipbench.schemes._resample import (
    CHUNK,
    downsample,
    reference_crop,
    reference_resampling,
    upsample,
)


@dataclass(frozen=True)
class ActiveDaemonConfig(PoisonConfig):
    """Poisoning fields (gamma, strategy, ...) plus the token generator's, with paper defaults."""

    bch_t: Annotated[int, Ge(0)] = 10
    token_steps: Annotated[int, Ge(1)] = 140_000
    token_batch_size: Annotated[int, Ge(1)] = 50
    token_lr: Annotated[float, Gt(0)] = 1e-4
    l_secret: float = 1.5
    l_ssim: float = -2.0
    l_lpips: float = 1.5
    l_yuv: float = 1.5
    l_critic: float = 0.5
    critic: bool = False
    stn: bool = True
    secret_only_steps: int = 1_500
    secret_gate_acc: float = 0.0  # see TokenConfig: 0 keeps the reference's fixed schedule
    image_ramp_steps: int = 15_000
    noise_ramp_steps: int = 10_000
    # Train until the held-out bit accuracy under full noise reaches this, token_steps being
    # the cap (0: the reference's fixed token_steps); see TokenConfig.
    token_converge_bit_acc: float = 0.0
    token_min_full_steps: int = 0
    token_lpips_images: Annotated[int, Ge(0)] = 0  # LPIPS on this many of each batch (0: all)
    token_image_loss: Literal["paper", "reference"] = "paper"  # see TokenConfig.image_loss
    # The generator's JPEG noise layer (0: off, as StegaStamp before its JPEG ramp). Poisoning's
    # own JPEG noise in D_u is PoisonConfig.jpeg_quality: two fields, two jobs.
    token_jpeg_quality: Annotated[int, Interval(ge=0, le=100)] = 0
    token_noise_level: float = 1.0  # see TokenConfig.noise_level
    strength: Annotated[float, Gt(0)] = 1.0  # l_t, the token's strength at authorization time
    # The side the token is made at. 0 (default): the dataset's own, so the token is all an
    # authorized input has that a clean one lacks. R: the reference pipeline (SCHEMES.md,
    # "Resolution"): up to R (Pillow BICUBIC), token, 8-bit, down (Pillow BILINEAR), so every
    # authorized input also carries a resampling (see resample-lock); ~(R/32)^2 the cost.
    token_resolution: Annotated[int, Ge(0)] = 0
    # The control model: D_u's clean images resampled as the authorized ones (down(up(x)), at
    # token_resolution or 224), so both sides carry the blur and only the token separates them.
    resample_clean: bool = False
    # Ordinary noise in the unauthorized set (paper Sec. IV-B: Gaussian and S&P images mixed into
    # D_u "to distinguish noise from tokens"; the paper gives no fraction). Half of D_u, a third
    # each Gaussian, salt-and-pepper and JPEG (jpeg_quality). noise_scale="token": the Gaussian
    # std is the trained token's own residual std and the S&P amount gives the same MSE
    # (3 sigma^2), measured on the owner's images; "fixed": gaussian_std / saltpepper_amount.
    # Measured on smoke (8 epochs): a Gaussian forgery at the token's scale is served at 90.4%
    # with no D_u noise, 32.0% at a fraction of 0.2 and 15.0% at 0.5 (A_ud 11).
    noise_fraction: Annotated[float, Interval(ge=0, le=1)] = 0.5
    noise_scale: Literal["token", "fixed"] = "token"
    eval_identify: Annotated[int, Ge(1)] = 500  # authorized test images decoded for A_dec
    # Reuse a generator trained elsewhere (paper Table IX): a `tokens` artefact folder of an
    # earlier run, e.g. WORKDIR/artifacts/tokens/KEY; empty trains one on this task's data.
    token_from: str = ""


def _token_config(cfg: ActiveDaemonConfig) -> TokenConfig:
    return TokenConfig(
        steps=cfg.token_steps, batch_size=cfg.token_batch_size, lr=cfg.token_lr, l_secret=cfg.l_secret,
        l_ssim=cfg.l_ssim, l_lpips=cfg.l_lpips, l_yuv=cfg.l_yuv, l_critic=cfg.l_critic, critic=cfg.critic,
        stn=cfg.stn, secret_only_steps=cfg.secret_only_steps, secret_gate_acc=cfg.secret_gate_acc,
        image_ramp_steps=cfg.image_ramp_steps,
        noise_ramp_steps=cfg.noise_ramp_steps, noise=NoiseConfig(jpeg_quality=cfg.token_jpeg_quality),
        strength=cfg.strength, converge_bit_acc=cfg.token_converge_bit_acc,
        min_full_steps=cfg.token_min_full_steps, lpips_images=cfg.token_lpips_images,
        image_loss=cfg.token_image_loss, noise_level=cfg.token_noise_level,
        resolution=cfg.token_resolution,
    )  # fmt: skip


MAX_TOKEN_RESOLUTION = 512


@schemes.register("activedaemon")
class ActiveDaemon(TokenScheme, CredentialForging, SharedStage, StealthViews):
    """Invisible per-user tokens from a StegaStamp encoder, trained in by poisoning."""

    Config = ActiveDaemonConfig
    forge_kinds = FORGERY_KINDS  # token vs resampling (tokens/forgeries.py)
    stealth_views = ("token", "reference")  # see view_pairs
    summary = "invisible per-user tokens (StegaStamp encoder + BCH identities), poisoning (NDSS'24)"
    preset_defaults = {
        # Smoke: a token that locks and traces under any owner key in minutes, not the paper's
        # token: the secret loss alone at 5x StegaStamp's rate until 85% of the bits read,
        # then image losses at a fifth of the paper's weights, no noise; 12 poisoned epochs.
        # Why each value, what else was tried, figures over 5 keys: docs/activedaemon.md.
        "smoke": {
            "token_steps": 1_500, "token_lr": 5e-4, "token_batch_size": 32,
            "secret_only_steps": 700, "secret_gate_acc": 0.85, "image_ramp_steps": 300,
            "noise_ramp_steps": 300, "token_noise_level": 0.0,
            "l_ssim": -0.4, "l_lpips": 0.3, "l_yuv": 0.3, "protect_epochs": 12,
            "strength": 0.3, "stn": False, "eval_identify": 100,
        },
        # The generator trains until a held-out batch decodes at 97% bit accuracy under the
        # full reference noise (evaluated every 250 steps once noise and image losses are at
        # full strength, and 2,500 steps after that), capped at 15,000 steps (~11% of the
        # reference's 140k; about 30 min on 2 cores). The secret loss trains alone until the
        # decoder reads 90% of the bits, then noise and image losses ramp in. Measured
        # trajectories: docs/activedaemon.md. Protection trains 2x the baseline's epochs (see
        # the README's Presets section): 20 against whitenet's 10.
        "quick": {
            "token_steps": 15_000,
            "token_converge_bit_acc": 0.97,
            "token_min_full_steps": 2_500,
            "token_batch_size": 32,
            "secret_only_steps": 200,
            "secret_gate_acc": 0.9,
            "image_ramp_steps": 1_500,
            "noise_ramp_steps": 1_000,
            "protect_epochs": 20,
        },
    }  # fmt: skip

    def validate(self, spec: ModelSpec) -> None:
        """The token U-Net halves the image four times: the task's size must divide by 16."""
        super().validate(spec)
        r = self.config.token_resolution
        if r and (r < spec.image_size or r % 16 or r > MAX_TOKEN_RESOLUTION):
            raise IpbenchError(
                f"token_resolution={r} does not fit {spec.image_size}-px images; valid: 0 (their "
                f"own size) or a multiple of 16 from {spec.image_size} to {MAX_TOKEN_RESOLUTION} "
                "(the token U-Net halves it four times; above that a batch does not fit a "
                "CPU's memory)"
            )
        if spec.image_size % 16:
            raise IpbenchError(
                f"the token U-Net needs an image size divisible by 16, got {spec.image_size} "
                "(a 32 px dataset, or imagefolder:PATH:SIZE with SIZE a multiple of 16)"
            )

    @property
    def codec(self) -> IdentityCodec:
        return IdentityCodec(self.config.bch_t)

    # --- stage 1: the token generator (its own cached stage) ----------------------------------
    def shared_stage(self) -> tuple[str, dict[str, Any]] | None:
        """The token generator's cached stage as (name, material): runs of the same task and
        seed whose settings differ only in what comes after it (gamma, protect epochs) share
        it, so a grid trains it once before them (ipbench.engine.executors). None with token_from."""
        if self.config.token_from:
            return None
        # the perceptual loss it trains with: LPIPS where its weights are installed, else the
        # reference's YUV-weighted L2 (installing them later trains a new generator)
        material = {"token_config": _token_config(self.config), "n_bits": self.codec.n_bits}
        return "tokens", {**material, "perceptual": "lpips" if lpips_ready() else "yuv_l2"}

    def compute_shared(self, ctx: RunContext) -> None:
        self.prepare(ctx)  # trains (or finds cached) the generator stage, nothing else

    def prepare(self, ctx: RunContext) -> Prepared:
        tcfg = _token_config(self.config)
        owner = ctx.owner
        c, size = ctx.model_spec.in_channels, ctx.model_spec.image_size
        n_bits = self.codec.n_bits

        # Checkpoints of the generator's trajectory, shared by every config that differs only in
        # where training stops (a killed run resumes; a step sweep trains each step once).
        # The encoder and decoder are the owner's secret: initialised and trained under a seed
        # drawn from the key seed, never the published run seed.
        gen_seed = ctx.secret_seed(self.name, "token-generator")
        trajectory = None
        if ctx.cache is not None:
            trajectory = ctx.secret_folder("token-trajectory") / content_hash(
                "token-trajectory", trajectory_config(tcfg), n_bits, ctx.data_key, gen_seed,
                ctx.code,
            )  # fmt: skip

        def train(work: Path) -> dict[str, Any]:
            gen, stats = train_token_generator(
                owner.x, n_bits, tcfg, ctx.device, gen_seed, checkpoint_dir=trajectory
            )
            gen.save(work)
            return {"metrics": {}, "stats": stats}

        if self.config.token_from:
            folder = Path(self.config.token_from).expanduser()
            if not (folder / TokenGenerator.FILE).exists():
                raise IpbenchError(
                    f"token_from={str(folder)!r} holds no {TokenGenerator.FILE} (a tokens artefact folder)"
                )
        else:
            # Its own cached stage, keyed by the settings, the owner's data, seed and code.
            shared = self.shared_stage()
            assert shared is not None  # token_from is handled above
            folder, _ = ctx.stage(*shared, train)
        marker = folder / "stage.json"
        stats = json.loads(marker.read_text())["info"].get("stats", {}) if marker.exists() else {}
        stats["source"] = str(folder)
        meta = {"token_generator": stats}
        try:
            gen = TokenGenerator.load(folder, n_bits, self.config.token_resolution or size, c, tcfg)
        except RuntimeError as exc:
            raise IpbenchError(
                f"token generator in {folder} does not fit {c}x{size}x{size} images ({exc})"
            ) from None
        return Prepared({f"gen.{k}": v for k, v in _generator_state(gen).items()}, meta)

    def _generator(self, protected: Protected) -> TokenGenerator:
        if "generator" not in protected.runtime:
            spec = protected.model_spec
            tcfg = _token_config(self.config)
            from ipbench.schemes._poisoning.tokens.stegastamp import TokenDecoder, TokenEncoder

            size = self.config.token_resolution or spec.image_size
            enc = TokenEncoder(self.codec.n_bits, size, spec.in_channels)
            dec = TokenDecoder(self.codec.n_bits, size, spec.in_channels, tcfg.stn)
            state = {k[4:]: v for k, v in protected.secrets.items() if k.startswith("gen.")}
            enc.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("enc.")})
            dec.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("dec.")})
            dev = next(iter(protected.model.parameters()), torch.empty(0)).device
            protected.runtime["generator"] = TokenGenerator(
                enc.to(dev).eval(), dec.to(dev).eval(), tcfg.strength
            )
        return protected.runtime["generator"]

    # --- stage 2: poisoning ------------------------------------------------------------------
    def tokenize_train(
        self, secrets: dict[str, torch.Tensor], x: torch.Tensor, seed: int
    ) -> torch.Tensor:
        gen = self._generator_from_secrets(secrets, x)
        bits = self.codec.encode_many(random_identities(len(x), seed + 1))
        return to_uint8(self.authorized(gen, x.float() / 255, bits))

    def authorized(
        self, gen: TokenGenerator, x: torch.Tensor, bits: torch.Tensor, at_token_size: bool = False
    ) -> torch.Tensor:
        """What a user sends for images ``x`` in [0, 1]: 8-bit tokened images. With a
        ``token_resolution``, the reference pipeline: up (Pillow BICUBIC), token, 8-bit, down
        (Pillow BILINEAR, antialiased), 8-bit; ``at_token_size``: the image before going down."""
        r = self.config.token_resolution
        if not r or r == x.shape[-1]:
            return quantize(gen.authorize(x, bits))
        if len(x) > CHUNK:  # the set at the token's size never exists whole
            return torch.cat([
                self.authorized(gen, x[i : i + CHUNK], bits[i : i + CHUNK] if bits.dim() > 1 else bits, at_token_size)
                for i in range(0, len(x), CHUNK)
            ])  # fmt: skip
        big = quantize(gen.authorize(upsample(x, r), bits))
        if at_token_size:
            return big
        return downsample(big, x.shape[-1])

    def _generator_from_secrets(
        self, secrets: dict[str, torch.Tensor], x: torch.Tensor
    ) -> TokenGenerator:
        from ipbench.ml.models import ModelSpec

        spec = ModelSpec("none", 1, x.shape[1], x.shape[-1], (), ())
        return self._generator(Protected(self.name, torch.nn.Identity(), spec, secrets))

    def unauthorized_noise(
        self, pcfg: PoisonConfig, secrets: dict[str, torch.Tensor], x: torch.Tensor, seed: int
    ) -> tuple[PoisonConfig, dict[str, Any]]:
        """D_u's ordinary noise at the token's own scale (``noise_scale="token"``)."""
        if self.config.noise_scale != "token" or pcfg.noise_fraction <= 0:
            return pcfg, {}
        sample = x[:512].float() / 255
        gen = self._generator_from_secrets(secrets, x)
        bits = self.codec.encode_many(random_identities(len(sample), seed + 3))
        sigma = (self.authorized(gen, sample, bits) - sample).std().item()
        meta = {"d_u_noise": {"gaussian_std": sigma, "saltpepper_amount": 3 * sigma**2}}
        return replace(pcfg, gaussian_std=sigma, saltpepper_amount=min(1.0, 3 * sigma**2)), meta

    # --- users -------------------------------------------------------------------------------
    def token_transform(self, protected: Protected, user: str):
        gen = self._generator(protected)
        bits = self.codec.encode(user)

        def transform(x: torch.Tensor) -> torch.Tensor:
            return self.authorized(gen, x, bits)

        return transform

    def forge_credential(
        self, protected: Protected, kind: str, ctx: RunContext
    ) -> Credential | None:
        """One of the forgeries that keep the token or the resampling but not both, made with
        the thief's own images (tokened for one user, as seen by a thief)."""
        if kind not in FORGERY_KINDS:
            raise self.unknown_kind(kind)
        gen = self._generator(protected)
        bits = self.codec.encode("seenuser")  # a user whose tokens the thief has seen
        own = ctx.thief.data.x[:POOL].float() / 255
        fn = forgery(kind, gen, bits, own, self.config.token_resolution, ctx.seed + 77)
        return Credential(user=f"forged:{kind}", kind="token", transform=fn)

    def clean_transform(self, x: torch.Tensor) -> torch.Tensor | None:
        """The control model's D_u: clean uint8 images resampled like the authorized ones."""
        if not self.config.resample_clean:
            return None
        r = self.config.token_resolution or REFERENCE_SIZE
        # the round trip a chunk at a time: the clean set at 224 px would be 13.5 GB
        return to_uint8(reference_resampling(x.float() / 255, r))

    def view_pairs(
        self, protected: Protected, credential: Credential, x: torch.Tensor
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """ "token": at the token's size against the image it was added to (up(x) at 224: the
        paper's view); "reference": both through Resize(36) + CenterCrop(32), as the reference's
        tests/stealthiness_test.py reads its PNG pairs (paper Table III)."""
        r, bits = self.config.token_resolution, self.codec.encode(credential.user)
        before = upsample(x, r) if r else quantize(x)
        after = self.authorized(self._generator(protected), x, bits, at_token_size=True)
        return {
            "token": (before, after),
            "reference": (reference_crop(before), reference_crop(after)),
        }

    def identify(self, protected: Protected, x: torch.Tensor) -> list[str | None]:
        r = self.config.token_resolution
        probs = self._generator(protected).decode_bits(upsample(x, r) if r else x)
        return [d.identity for d in self.codec.decode_many(probs)]

    def scheme_metrics(
        self, protected: Protected, ctx: RunContext
    ) -> dict[str, float | str | None]:
        """A_dec for users never seen in training, before and after BCH correction."""
        n = min(self.config.eval_identify, len(ctx.test))
        users = eval_users(ctx.seed + 12345, n)  # one fresh identity per image
        x = ctx.test.x[:n].float() / 255
        codec, gen = self.codec, self._generator(protected)
        bits = codec.encode_many(users)
        # decoded at the token's size, as the reference's service reads the 224-px PNG
        xa = self.authorized(gen, x, bits, at_token_size=True)
        probs = gen.decode_bits(xa)
        hard = (probs > 0.5).float()
        decoded = codec.decode_many(probs)
        msg = 64
        corrected = torch.stack([d.message for d in decoded])
        out: dict[str, float | str | None] = {
            "A_dec_raw": 100 * (hard == bits).float().mean().item(),
            "A_dec": 100 * (corrected == bits[:, :msg]).float().mean().item(),
            "id_rate": 100 * sum(d.identity == u for d, u in zip(decoded, users, strict=True)) / n,
            "bch_failures": 100 * sum(d.identity is None for d in decoded) / n,
            "capacity": float(2**msg),
            "capacity_note": f"theoretical: 2^{msg} identities, BCH(127,{msg}) message bits",
        }
        stats = protected.meta.get("token_generator", {})
        if stats.get("perceptual") == "yuv_l2":
            out["token_loss"] = "LPIPS unavailable: token trained with SSIM + YUV-weighted L2"
        return out


def _generator_state(gen: TokenGenerator) -> dict[str, torch.Tensor]:
    return {f"enc.{k}": v for k, v in gen.encoder.state_dict().items()} | {
        f"dec.{k}": v for k, v in gen.decoder.state_dict().items()
    }
