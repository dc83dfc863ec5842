"""Passport V1 (Fan, Ng, Chan, NeurIPS 2019; DeepIPR, TPAMI 2021): the weights need a passport.

Passport layers (``_passport_layers``) take their scale and bias from the conv applied to the
passport, so the trained weights only work with the passport they were trained with: V1, the
access-control variant. Passports default to the official choice, features of the pretrained
(here: the cached unprotected) model at each passport layer's input for a few real training
images; ``passport_source=noise`` draws uniform noise instead. A signature b in {-1,+1}^C is
embedded in sign(gamma) with the sign loss ``weight * sum relu(margin - b * gamma)``; ownership
is verified by the fraction of signature bits the suspect model reproduces.

Training: from scratch with the task's preset recipe through the shared trainer (the official
code trains passport networks from scratch too; its recipe, SGD lr 0.01, wd 1e-4, 200 epochs,
is not the quick preset's and is left to ``--set``), so A_od compares like with like.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from annotated_types import Ge
from torch import nn

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import schemes
from ipbench.metrics.overhead import count_params
from ipbench.ml.models import ModelSpec
from ipbench.ml.training import to_float_images
from ipbench.plugin.capabilities import CredentialForging, PassportLayers
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Credential, Protected, Scheme
from ipbench.schemes import _passport_layers as pl
from ipbench.schemes._modelside import accuracy_with, forged_generator

NO_PASSPORT_SEED = 0x5EED  # the public "no passport" noise: fixed, known to everyone


@dataclass(frozen=True)
class PassportConfig:
    """Defaults are the paper's: image-feature passports, sign loss weight 0.1, margin 0.1."""

    passport_source: Literal["features", "noise"] = "features"
    passport_images: Annotated[int, Ge(1)] = (
        1  # real images averaged into each passport (gamma and beta each)
    )
    sign_loss_weight: Annotated[float, Ge(0)] = 0.1
    sign_margin: Annotated[float, Ge(0)] = (
        0.1  # relu(margin - b * gamma): |gamma| pushed past the margin
    )
    key_seed: int = (
        0  # passport images, noise and signature are drawn from (the store's key seed, key_seed)
    )
    # Epochs of protection training; None: the preset's, as for the baseline.
    protect_epochs: Annotated[int, Ge(1)] | None = None


def noise_passports(shapes: dict[str, list[int]], g: torch.Generator) -> dict[str, torch.Tensor]:
    """Uniform noise in [-1, 1) of each passport's shape."""
    return {k: torch.rand(*s, generator=g) * 2 - 1 for k, s in sorted(shapes.items())}


@schemes.register("passport")
class Passport(Scheme, PassportLayers, CredentialForging):
    """Passport layers (V1): the network is useful only with the owner's passport."""

    Config = PassportConfig
    summary = "Fan et al. passport layers (V1): weights that need a secret passport"
    forge_kinds = ("random_passport", "features_passport")
    # smoke: at the preset's 4 epochs, training from scratch through the passport layers is at
    # the edge: with one key and seed, A_ad was 92.0 / 96.8 (AMX kernels, 1 / 2 threads) and
    # 65.6 / 93.8 (AVX2 kernels), so whether the scheme "took" depended on the CPU. At 6
    # epochs: 97.4 (AMX) and 97.2 (AVX2), one thread each.
    preset_defaults = {"smoke": {"protect_epochs": 6}}

    def __init__(self, config: Any = None):
        super().__init__(config)
        c = self.config
        if c.passport_source not in ("features", "noise"):
            raise IpbenchError(f"passport_source={c.passport_source!r}; valid: features, noise")
        if c.passport_images < 1 or c.sign_loss_weight < 0 or c.sign_margin < 0:
            raise IpbenchError(
                "passport needs passport_images >= 1, sign_loss_weight >= 0, sign_margin >= 0; "
                f"got {c.passport_images}, {c.sign_loss_weight}, {c.sign_margin}"
            )

    # --- passports ---------------------------------------------------------------------------
    def feature_passports(
        self, baseline: nn.Module, sites: list[str], x: torch.Tensor, device: torch.device
    ) -> dict[str, torch.Tensor]:
        """Baseline features at each site's input: the first half of ``x`` gives the gamma
        passports, the second half the beta passports."""
        n = self.config.passport_images
        feats = pl.layer_inputs(baseline.to(device), sites, to_float_images(x).to(device))
        out = {}
        for s in sites:
            out[f"{s}.gamma"], out[f"{s}.beta"] = feats[s][:n].clone(), feats[s][n:].clone()
        return out

    def _pick(self, n_pool: int, seed: int, salt: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(1_000_003 * seed + 7919 * self.config.key_seed + salt)
        return torch.randperm(n_pool, generator=g)[: 2 * self.config.passport_images]

    def no_passport(self, protected: Protected) -> dict[str, torch.Tensor]:
        """What an unauthorized query runs on: public noise of the passports' shapes."""
        g = torch.Generator().manual_seed(NO_PASSPORT_SEED)
        return noise_passports(protected.meta["passport_shapes"], g)

    # --- the contract ------------------------------------------------------------------------
    def protect(self, ctx: RunContext) -> Protected:
        c = self.config
        torch.manual_seed(ctx.seed)
        model, sites = pl.build_passport_model(ctx.model_spec)
        owner = ctx.owner
        if c.passport_source == "features":
            pick = self._pick(len(owner), ctx.secret_seed("passport", "images"), 1)
            passports = self.feature_passports(ctx.unprotected(), sites, owner.x[pick], ctx.device)
        else:
            base = pl.build_model(ctx.model_spec).to(ctx.device)
            shapes_of = self.feature_passports(
                base, sites, owner.x[: 2 * c.passport_images], ctx.device
            )
            g = ctx.secret_generator("passport", "noise", c.key_seed)
            passports = noise_passports({k: list(v.shape) for k, v in shapes_of.items()}, g)
        g = ctx.secret_generator("passport", "signature", c.key_seed)
        layers = pl.layers(model, sites)
        signature = {
            s: torch.randint(0, 2, (layer.norm.num_features,), generator=g).float() * 2 - 1
            for s, layer in zip(sites, layers, strict=True)
        }
        pl.install(model, sites, passports)
        bits = [signature[s].to(ctx.device) for s in sites]

        def sign_loss(m: nn.Module) -> torch.Tensor:
            total = torch.zeros((), device=ctx.device)
            for layer, b in zip(layers, bits, strict=True):
                gamma = layer.scale_bias()[0].float()
                total = total + F.relu(c.sign_margin - b * gamma).sum()
            return c.sign_loss_weight * total

        train = ctx.preset.train
        if self.config.protect_epochs is not None:
            train = dataclasses.replace(train, epochs=self.config.protect_epochs)
        result = ctx.trainer.fit(
            model, owner.x, owner.y, train, seed=ctx.seed,
            extra_loss=sign_loss, checkpoint_dir=ctx.stage_dir, desc="passport",
        )  # fmt: skip
        meta = {
            "sites": sites,
            "passport_shapes": {k: list(v.shape) for k, v in passports.items()},
            "passport_source": c.passport_source,
            "train_wall_s": result.wall_s,
        }
        secrets = {f"passport.{k}": v for k, v in passports.items()}
        secrets.update({f"signature.{s}": b for s, b in signature.items()})
        model = model.cpu().to(memory_format=torch.contiguous_format).eval()
        protected = Protected(self.name, model, ctx.model_spec, secrets, meta)
        pl.install(model, sites, self.no_passport(protected))
        return protected

    def load_protected(self, folder) -> Protected:
        protected = Protected.load(
            folder, build=lambda spec, _meta: pl.build_passport_model(spec)[0]
        )
        pl.install(protected.model, protected.meta["sites"], self.no_passport(protected))
        return protected

    def owner_passports(self, protected: Protected) -> dict[str, torch.Tensor]:
        n = len("passport.")
        return {k[n:]: v for k, v in protected.secrets.items() if k.startswith("passport.")}

    def authorize(self, protected: Protected, user: str) -> Credential:
        """V1 hands every authorized user the owner's passport."""
        tensors = {k: v.clone() for k, v in self.owner_passports(protected).items()}
        return Credential(user, "passport", tensors)

    def serve(
        self, protected: Protected, x: torch.Tensor, credential: Credential | None
    ) -> torch.Tensor:
        model, sites = protected.model, protected.meta["sites"]
        if credential is None:
            return model(x)  # runs on the public no-passport noise installed at load time
        with pl.using(model, sites, credential.tensors):
            return model(x)

    def validate(self, spec: ModelSpec) -> None:
        """Passport layers go into the networks whose placement the papers give."""
        if spec.name not in pl.SUPPORTED:
            raise IpbenchError(
                f"passport layers are placed for models {', '.join(pl.SUPPORTED)}; "
                f"got {spec.name!r} (--model)"
            )

    # --- PassportLayers --------------------------------------------------------------------
    def installed_passports(
        self, protected: Protected, model: nn.Module
    ) -> dict[str, torch.Tensor]:
        return pl.installed(model, protected.meta["sites"])

    def install_passports(
        self, protected: Protected, model: nn.Module, passports: dict[str, torch.Tensor]
    ) -> None:
        pl.install(model, protected.meta["sites"], passports)

    def passport_credential(self, passports: dict[str, torch.Tensor]) -> Credential:
        return Credential("holder", "passport", passports)

    def forge(self, protected: Protected, seed: int) -> Credential:
        """A random passport: uniform noise of the right shapes, never the owner's."""
        g = forged_generator(seed, 3)
        return Credential(
            "forger", "passport", noise_passports(protected.meta["passport_shapes"], g)
        )

    def forge_from_features(self, protected: Protected, ctx: RunContext) -> Credential:
        """A forger who knows the recipe and the pretrained model but not the owner's images:
        baseline features of images from the attacker's own split."""
        sites = protected.meta["sites"]
        pick = self._pick(len(ctx.thief.data), ctx.seed, 4)
        tensors = self.feature_passports(
            ctx.unprotected(), sites, ctx.thief.data.x[pick], ctx.device
        )
        return Credential("forger", "passport", tensors)

    def forge_credential(
        self, protected: Protected, kind: str, ctx: RunContext
    ) -> Credential | None:
        """random_passport: noise (forge); features_passport: the attacker's own images through
        the pretrained model (forge_from_features), None without a pretrained model."""
        if kind == "random_passport":
            return self.forge(protected, ctx.seed)
        if kind == "features_passport":
            return None if ctx.baseline is None else self.forge_from_features(protected, ctx)
        raise self.unknown_kind(kind)

    def verify_ownership(self, protected: Protected, model: nn.Module) -> dict[str, float]:
        """Signature detection rate (percent of sign(gamma) bits equal to the owner's signature)
        of ``model`` run with the owner's passport."""
        return self.signature_match(protected, model, self.owner_passports(protected))

    def signature_match(
        self, protected: Protected, model: nn.Module, passports: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        """Percent of sign(gamma) bits of ``model`` under ``passports`` equal to the owner's
        signature: with the owner's passport, ownership; with a forged one, how far a forger's
        gamma signs still carry (or erase) the owner's signature."""
        sites = protected.meta["sites"]
        with pl.using(model, sites, passports):
            got = pl.signs(model, sites)
        bits = torch.cat([protected.secrets[f"signature.{s}"] for s in sites])
        match = torch.cat([got[s] for s in sites]) == bits
        return {
            "signature_detection": 100.0 * match.float().mean().item(),
            "bits": float(len(bits)),
        }

    def scheme_metrics(
        self, protected: Protected, ctx: RunContext
    ) -> dict[str, float | str | None]:
        own = self.verify_ownership(protected, protected.model)
        n_passport = sum(v.numel() for v in self.owner_passports(protected).values())
        return {
            "A_td": accuracy_with(self, protected, ctx, self.forge(protected, ctx.seed)),
            "A_td_forged_features": accuracy_with(
                self, protected, ctx, self.forge_from_features(protected, ctx)
            ),
            "signature_detection": own["signature_detection"],
            "signature_bits": own["bits"],
            "passport_elements": float(n_passport),
            "params_with_passport": float(count_params(protected.model) + n_passport),
        }
