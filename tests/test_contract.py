from __future__ import annotations

import pytest
import torch

from ipbench.core.errors import CorruptArtifactError, IpbenchError
from ipbench.core.registry import schemes
from ipbench.ml.models import ModelSpec, build_model
from ipbench.plugin.capabilities import InputSpaceToken, capabilities_of, capability
from ipbench.plugin.contract import Protected

SPEC = ModelSpec("tiny", 10, 3, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _protected() -> Protected:
    torch.manual_seed(0)
    return Protected(
        "none",
        build_model(SPEC).eval(),
        SPEC,
        secrets={"key": torch.arange(5.0)},
        meta={"users": ["a"]},
    )


def test_protected_round_trips_through_a_folder(tmp_path):
    p = _protected()
    p.save(tmp_path)
    q = Protected.load(tmp_path)
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(p.model(x), q.model(x))
    assert torch.equal(q.secrets["key"], torch.arange(5.0)) and q.meta == {"users": ["a"]}
    assert q.model_spec == SPEC


def test_truncated_or_missing_files_are_reported(tmp_path):
    _protected().save(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(CorruptArtifactError, match="unreadable protected model"):
        Protected.load(tmp_path)
    (tmp_path / "owner" / "secrets.safetensors").unlink()
    with pytest.raises(CorruptArtifactError, match=r"missing owner/secrets\.safetensors"):
        Protected.load(tmp_path)


def test_weights_for_another_architecture_are_reported(tmp_path):
    _protected().save(tmp_path)
    import json

    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["model_spec"]["name"] = "fastnet"
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptArtifactError, match=r"do not fit the architecture"):
        Protected.load(tmp_path)


def test_none_scheme_serves_everyone_the_same_model():
    scheme = schemes.get("none")()
    p = _protected()
    x = torch.rand(3, 3, 32, 32)
    cred = scheme.authorize(p, "alice")
    assert torch.equal(scheme.query(p, x, cred), scheme.query(p, x, None))
    assert scheme.stolen(p) is p.model
    assert capabilities_of(scheme) == [] and not isinstance(scheme, InputSpaceToken)
    with pytest.raises(IpbenchError, match="scheme 'none' lacks capability InputSpaceToken"):
        capability(scheme, InputSpaceToken)


def test_query_is_the_base_class_path_and_applies_input_space_credentials():
    """A scheme cannot replace the evaluator's entry point; an input-space credential reaches
    the network through it without the scheme doing anything."""
    from ipbench.plugin.capabilities import InputSpaceToken
    from ipbench.plugin.contract import Credential, Scheme

    with pytest.raises(TypeError, match=r"overrides Scheme\.query; override serve instead"):

        class Overrides(Scheme):
            def query(self, protected, x, credential=None):
                return protected.model(x)

    class Negate(Scheme, InputSpaceToken):
        Config = dict

        def protect(self, ctx):
            raise NotImplementedError

        def authorize(self, protected, user):
            return Credential(user, "negate")

        def apply(self, credential, x):
            return 1 - x

    p, x = _protected(), torch.rand(3, 3, 32, 32)
    scheme = Negate()
    assert torch.equal(scheme.query(p, x, scheme.authorize(p, "u")), p.model(1 - x))
    assert torch.equal(scheme.query(p, x), p.model(x))


def test_secrets_are_saved_apart_and_owner_only(tmp_path):
    """The deployed artefact (weights, meta) and the owner's secrets live apart; the secrets'
    folder and file are readable by the owner only."""
    _protected().save(tmp_path)
    secrets = tmp_path / "owner" / "secrets.safetensors"
    assert not (tmp_path / "secrets.safetensors").exists()
    assert secrets.stat().st_mode & 0o777 == 0o600
    assert secrets.parent.stat().st_mode & 0o777 == 0o700
