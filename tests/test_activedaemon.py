from __future__ import annotations

import pytest
import torch

from ipbench.core.registry import schemes
from ipbench.schemes._poisoning.tokens.bch import IdentityCodec
from ipbench.schemes._poisoning.tokens.stegastamp import TokenDecoder, TokenEncoder

# Tests of the pipeline's plumbing (sizes, resampling, 8-bit) need a token, not a readable one:
# smoke's 1,500 generator steps would cost minutes (5 at 64 px) for nothing they check.
PLUMBING_TOKEN = {"token_steps": 60, "secret_only_steps": 60}


def test_token_is_dynamic_per_image_and_per_string():
    """The paper's "dynamic" property: G_e(x_i, s) != G_e(x_j, s) and G_e(x, s_i) != G_e(x, s_j)."""
    torch.manual_seed(0)
    codec = IdentityCodec()
    enc = TokenEncoder(codec.n_bits, 32).eval()
    x = torch.rand(2, 3, 32, 32)
    s_a, s_b = codec.encode("alice"), codec.encode("bob")
    with torch.no_grad():
        t_xa = enc(s_a[None].expand(2, -1), x)
        t_b = enc(s_b[None].expand(2, -1), x)
    assert (t_xa[0] - t_xa[1]).abs().max() > 1e-4  # same string, different images
    assert (t_xa[0] - t_b[0]).abs().max() > 1e-4  # same image, different strings


def test_decoder_reads_bits_from_any_resolution_divisible_by_16():
    for size in (32, 64):
        dec = TokenDecoder(127, size)
        assert dec(torch.rand(3, 3, size, size)).shape == (3, 127)


def test_config_defaults_are_the_papers():
    cfg = schemes.get("activedaemon").Config()
    assert (cfg.l_ssim, cfg.l_lpips, cfg.l_secret, cfg.l_critic) == (-2.0, 1.5, 1.5, 0.5)
    assert (
        cfg.gamma == 0.5 and cfg.strategy == "single" and cfg.target_class == 5 and cfg.bch_t == 10
    )


@pytest.mark.slow
def test_smoke_protected_model_serves_authorized_users_and_refuses_others(tmp_path):
    """On the easy synthetic task: A_ad near the unprotected accuracy, A_ud near chance (10%).

    An unprotected model would give A_ud == A_ad, so A_pd > 60 cannot pass without the lock.
    The token is a 60-step one at StegaStamp's learning rate: consistent but unreadable, which
    is all the lock needs (the smoke default's 1,500 steps, which also trace, cost a minute or
    two more; benchmarks/smoke_keys.py measures them over owner keys).
    """
    from ipbench.engine.runner import Runner, RunRequest

    cheap_token = {"token_steps": "60", "secret_only_steps": "60", "token_lr": "0.0001"}
    request = RunRequest(
        scheme="activedaemon", preset="smoke", workdir=str(tmp_path), device="cpu",
        overrides={"protect_epochs": "8", **cheap_token}, attacks="fake-token",
    )  # fmt: skip
    outcome = Runner(request).run()
    m = {r["name"]: r["value"] for r in outcome.metrics if r["stage"] == "evaluate"}
    assert m["A_ad"] > 85 and m["A_ud"] < 25 and m["A_pd"] > 60
    # Gaussian noise at the token's own scale is answered like an unauthorized query: D_u held
    # such noise (noise_scale="token"), so the model keys on the token, not on any perturbation.
    fake = {r["name"]: r["value"] for r in outcome.metrics if r["stage"] == "attack:fake-token"}
    assert fake["A_fake@gaussian"] < 25
    assert 0 < m["PSNR"] < 60 and "A_dec" in m and "id_rate" in m
    notes = {r["name"]: r["note"] for r in outcome.metrics if r["note"]}
    assert "LPIPS" in notes  # offline: reported missing with its reason, not computed


@pytest.mark.slow
def test_all_five_strategies_run_through_the_cli_settings(tmp_path, monkeypatch):
    """``ipbench run --set strategy=...`` reaches the labels the protected model trains on, for
    every strategy (one short epoch each; the token generator is trained once and cached)."""
    from typer.testing import CliRunner

    from ipbench.cli.main import app
    from ipbench.schemes._poisoning import poisoning

    seen: dict[str, tuple] = {}
    real = poisoning.PoisonedSet.targets

    def spy(self, epoch: int):
        out = real(self, epoch)
        seen.setdefault(self.cfg.strategy, (self.y_true, self.authorized, out))
        return out

    monkeypatch.setattr(poisoning.PoisonedSet, "targets", spy)
    fast = ["--set", "epochs=1", "--set", "max_train=300", "--set", "max_test=100"]
    fast += ["--set", "token_steps=20", "--set", "secret_only_steps=20"]  # labels, not the token
    fast += ["--set", "protect_epochs=1"]  # smoke's 12 would override epochs=1
    for strategy in poisoning.STRATEGIES:
        result = CliRunner().invoke(
            app, ["run", "-s", "activedaemon", "-p", "smoke", "--device", "cpu", "--attacks",
                  "none", "--workdir", str(tmp_path), "--set", f"strategy={strategy}", *fast],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    assert set(seen) == set(poisoning.STRATEGIES)
    for strategy, (y, auth, targets) in seen.items():
        kept = targets[auth] if targets.ndim == 1 else targets[auth].argmax(1)
        assert torch.equal(kept, y[auth]), strategy  # authorized images keep their labels
        yu, tu = y[~auth], targets[~auth]
        if strategy == "single":
            assert (tu == 5).all()
        elif strategy == "near":
            assert torch.equal(tu, (yu + 1) % 10)
        elif strategy == "surjective":
            assert torch.equal(tu, torch.tensor([1, 2, 3, 4, 0])[yu % 5])
        elif strategy == "random":
            assert len(tu.unique()) > 5 and not torch.equal(tu, yu)
        else:  # uniform: soft targets, nothing on the true class
            assert torch.allclose(tu.sum(1), torch.ones(len(yu)))
            assert (tu[torch.arange(len(yu)), yu] == 0).all()
    bad = CliRunner().invoke(
        app, ["run", "-s", "activedaemon", "-p", "smoke", "--workdir", str(tmp_path / "b"),
              "--set", "strategy=far"],
    )  # fmt: skip
    assert bad.exit_code == 2
    assert "strategy='far' is not one of single, random, near, surjective, uniform" in bad.output


def test_new_users_get_working_credentials_without_retraining():
    """authorize() works for any string; identify() reads back what a trained decoder sees."""
    import dataclasses

    from ipbench.ml.models import ModelSpec, build_model
    from ipbench.plugin.contract import Protected
    from ipbench.schemes._poisoning.tokens.generator import TokenGenerator

    scheme = schemes.get("activedaemon")(
        dataclasses.replace(schemes.get("activedaemon").Config(), stn=False)
    )
    codec = IdentityCodec()
    torch.manual_seed(0)
    gen = TokenGenerator(
        TokenEncoder(codec.n_bits, 32).eval(), TokenDecoder(codec.n_bits, 32, stn=False).eval()
    )
    secrets = {f"gen.enc.{k}": v for k, v in gen.encoder.state_dict().items()}
    secrets |= {f"gen.dec.{k}": v for k, v in gen.decoder.state_dict().items()}
    spec = ModelSpec("tiny", 10, 3, 32, (0.5,) * 3, (0.25,) * 3)
    protected = Protected("activedaemon", build_model(spec), spec, secrets)
    x = torch.rand(4, 3, 32, 32)
    a, b = scheme.authorize(protected, "newuser1"), scheme.authorize(protected, "newuser2")
    xa, xb = scheme.apply(a, x), scheme.apply(b, x)
    assert xa.shape == x.shape and not torch.equal(xa, xb)
    assert torch.equal(xa, (xa * 255).round() / 255)  # users send 8-bit images
    assert scheme.query(protected, x, a).shape == (4, 10)
    assert len(scheme.identify(protected, xa)) == 4


def test_poisoning_and_generator_jpeg_fields_are_distinct():
    """token_jpeg_quality drives the generator's noise layer; jpeg_quality the noise in D_u."""
    import dataclasses

    from ipbench.schemes.activedaemon import _token_config

    cls = schemes.get("activedaemon")
    cfg = dataclasses.replace(cls.Config(), jpeg_quality=40, token_jpeg_quality=90)
    scheme = cls(cfg)
    assert _token_config(cfg).noise.jpeg_quality == 90
    assert scheme.poison_config().jpeg_quality == 40
    default = cls.Config()
    assert default.jpeg_quality == 75 and default.token_jpeg_quality == 0
    assert default.noise_fraction == 0.5 and default.noise_scale == "token"


def test_token_resolution_outside_what_fits_is_one_clear_error():
    from ipbench.core.errors import IpbenchError
    from ipbench.ml.models import ModelSpec

    cls = schemes.get("activedaemon")
    spec = ModelSpec("tiny", 10, 3, 32, (0.5,) * 3, (0.25,) * 3)
    for bad in (16, 72, 1024):  # below the images, not a multiple of 16, beyond memory
        with pytest.raises(IpbenchError, match=f"token_resolution={bad} does not fit 32-px"):
            cls(cls.Config(token_resolution=bad)).validate(spec)
    for ok in (0, 32, 64, 224):
        cls(cls.Config(token_resolution=ok)).validate(spec)


@pytest.mark.slow
def test_a_token_made_at_64_px_goes_down_to_the_classifier_and_decodes_at_64(tmp_path):
    """The reference pipeline as an option: the generator runs at the token's size, users send
    the 8-bit image resized down with Pillow's antialiased bilinear, identities decode at 64."""
    from ipbench.schemes._resample import reference_resampling
    from ipbench.testing import task_context

    cls = schemes.get("activedaemon")
    smoke = cls.preset_defaults["smoke"] | PLUMBING_TOKEN
    scheme = cls(cls.Config(**smoke, token_resolution=64))
    ctx = task_context(tmp_path, max_train=300, max_test=50)
    secrets = scheme.prepare(ctx).secrets
    gen = scheme._generator_from_secrets(secrets, ctx.owner.x[:1])
    assert gen.encoder(torch.zeros(1, 127), torch.rand(1, 3, 64, 64)).shape[-1] == 64
    x = ctx.test.x[:8].float() / 255
    bits = scheme.codec.encode_many([f"user{i}" for i in range(8)])
    sent = scheme.authorized(gen, x, bits)
    big = scheme.authorized(gen, x, bits, at_token_size=True)
    assert sent.shape == x.shape and big.shape[-1] == 64
    assert torch.equal(sent * 255, (sent * 255).round())  # 8-bit, as a PNG holds it
    # what the classifier sees carries the resampling as well as the token: the token alone
    # (sent against the resampled clean image) is smaller than sent against the raw image
    plain = reference_resampling(x, up=64)
    assert float((sent - plain).abs().mean()) < float((sent - x).abs().mean())

    # the stealthiness views: "token" compares at 64 px against up(x); "reference" crops both
    from ipbench.plugin.contract import Credential, Protected
    from ipbench.plugin.evaluate import EvalConfig, stealthiness
    from ipbench.schemes._resample import upsample

    protected = Protected(scheme.name, torch.nn.Identity(), ctx.model_spec, secrets)
    views = scheme.view_pairs(protected, Credential("user0", "token"), x)
    assert torch.equal(views["token"][0], upsample(x, 64)) and views["token"][1].shape[-1] == 64
    assert views["reference"][0].shape[-1] == 32 and views["reference"][1].shape == x.shape
    cfg = EvalConfig(quality_images=8, batch_size=5)  # two chunks: the views are joined
    quality = stealthiness(scheme, protected, ctx.test, "user0", cfg)
    assert {"PSNR", "PSNR@token", "PSNR@reference", "SSIM@token", "LPIPS@reference"} <= set(quality)
    # the token view is user0's token at 64 px against up(x); another user's is another image
    from ipbench.metrics.image_quality import psnr

    own = scheme.authorized(gen, x, scheme.codec.encode("user0"), at_token_size=True)
    assert quality["PSNR@token"] == pytest.approx(psnr(upsample(x, 64), own), abs=1e-4)
    assert torch.equal(own, views["token"][1])


def test_the_reference_view_is_torchvisions_resize_36_and_center_crop_32():
    """``_reference_crop`` is the reference's stealthiness transform, within 1 grey level."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms

    from ipbench.schemes._resample import reference_crop

    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(3, 3, 224, 224, generator=gen) * 255).round() / 255
    x = torch.nn.functional.avg_pool2d(x, 5, 1, 2)  # smooth, like a photo, not pure noise
    x = (x * 255).round() / 255
    ours = reference_crop(x)
    pipe = transforms.Compose([transforms.Resize(36), transforms.CenterCrop(32)])
    for img, mine in zip(x, ours, strict=True):
        pil = Image.fromarray((img * 255).round().byte().permute(1, 2, 0).numpy())
        theirs = torch.from_numpy(np.asarray(pipe(pil)).copy()).permute(2, 0, 1).float()
        assert float((mine * 255 - theirs).abs().max()) <= 1


@pytest.mark.slow
def test_the_forgeries_keep_either_the_token_or_the_resampling(tmp_path):
    """(a) resampling only, (b) another image's token on the raw image, (c) at the token's
    size, (d) Gaussian at the token's scale: each from the thief's view, each 8-bit."""
    from ipbench.plugin.contract import Protected
    from ipbench.schemes._resample import reference_resampling
    from ipbench.testing import task_context

    cls = schemes.get("activedaemon")
    scheme = cls(cls.Config(**cls.preset_defaults["smoke"] | PLUMBING_TOKEN))
    ctx = task_context(tmp_path, max_train=300, max_test=50)
    secrets = scheme.prepare(ctx).secrets
    protected = Protected(scheme.name, torch.nn.Identity(), ctx.model_spec, secrets)
    x = ctx.test.x[:6].float() / 255
    sent = {}
    for kind in scheme.forge_kinds:
        cred = scheme.forge_credential(protected, kind, ctx.for_thief())
        sent[kind] = cred.transform(x)
        assert sent[kind].shape == x.shape and torch.equal(
            sent[kind] * 255, (sent[kind] * 255).round()
        )
    assert torch.equal(sent["resampled"], reference_resampling(x, 224))  # no token at all
    # at the images' own size the token's two placements agree, and differ from resampling
    assert torch.allclose(sent["other_token_raw"], sent["other_token_at_size"], atol=1 / 255)
    assert not torch.equal(sent["other_token_raw"], sent["resampled"])
    with pytest.raises(Exception, match="valid: resampled"):
        scheme.forge_credential(protected, "nope", ctx.for_thief())


def test_the_control_model_resamples_the_clean_training_images_too():
    from ipbench.schemes._poisoning.poisoning import PoisonConfig, build_poisoned_set
    from ipbench.schemes._resample import reference_resampling

    cls = schemes.get("activedaemon")
    x = (torch.rand(20, 3, 32, 32) * 255).round().to(torch.uint8)
    y = torch.arange(20) % 10
    assert cls(cls.Config()).clean_transform(x) is None  # the default: clean stays clean
    control = cls(cls.Config(resample_clean=True))
    want = (reference_resampling(x.float() / 255) * 255).round().to(torch.uint8)
    assert torch.equal(control.clean_transform(x), want)
    mark = lambda x, idx: torch.zeros_like(x)  # noqa: E731  (tokened images: all black)
    made = build_poisoned_set(x, y, 10, PoisonConfig(), 0, mark, control.clean_transform)
    unauth = made.x[~made.authorized]
    rows = [i for i in range(20) if any(torch.equal(u, want[i]) for u in unauth)]
    assert len(rows) == len(unauth) == 10  # every clean image went in resampled
