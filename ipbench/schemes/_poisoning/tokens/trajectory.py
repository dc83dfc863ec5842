"""Checkpoints along a token generator's trajectory, and its stopping rule.

Two configs that differ only in where training stops (``TRAJECTORY_FIELDS``) pass through the
same states, so one folder of checkpoints serves both: a killed run resumes, and a step sweep
trains each step once. A resumed run is bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ipbench.core.authenticity import check_record, sign_record
from ipbench.core.errors import CorruptArtifactError
from ipbench.core.integrity import sha256_file
from ipbench.core.jsonsafe import loads_limited
from ipbench.core.tensorio import read_tensors, write_tensors

if TYPE_CHECKING:
    from ipbench.schemes._poisoning.tokens.generator import GeneratorTraining, TokenConfig


PURPOSE = "token-trajectory"  # its checkpoints' tag purpose (ipbench.core.authenticity)
TRAJECTORY_FIELDS = ("steps", "converge_bit_acc", "min_full_steps", "snapshot_steps")


def trajectory_config(cfg: TokenConfig) -> TokenConfig:
    """The config with the fields that only decide where training stops blanked: two configs
    with one trajectory config pass through identical states, so checkpoints are shared."""
    return dataclasses.replace(
        cfg, steps=0, converge_bit_acc=0.0, min_full_steps=0, snapshot_steps=()
    )


def stops(cfg: TokenConfig, history: list[dict[str, Any]], ev: dict[str, Any]) -> bool:
    """The convergence rule at evaluation ``ev`` (``history`` up to and including it)."""
    if cfg.converge_bit_acc <= 0 or not ev["full"]:
        return False
    first_full = min(h["step"] for h in history if h["full"])
    return (
        ev["step"] - first_full >= cfg.min_full_steps
        and ev["bit_acc_noisy"] >= 100 * cfg.converge_bit_acc
    )


@dataclass
class LoopState:
    step: int = 0
    gate: int | None = None
    recent: list[float] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


def save_checkpoint(folder: Path, name: str, t: GeneratorTraining, st: LoopState) -> None:
    tensors = {f"enc.{k}": v for k, v in t.enc.state_dict().items()}
    tensors |= {f"dec.{k}": v for k, v in t.dec.state_dict().items()}
    for i, state in t.opt.state_dict()["state"].items():
        tensors |= {f"opt.{i}.{k}": v for k, v in state.items()}
    if t.critic is not None and t.opt_c is not None:
        tensors |= {f"critic.{k}": v for k, v in t.critic.state_dict().items()}
        for i, state in t.opt_c.state_dict()["state"].items():
            tensors |= {f"optc.{i}.{k}": v for k, v in state.items()}
    tensors["rng"] = t.g.get_state()
    folder.mkdir(parents=True, exist_ok=True)
    write_tensors(tensors, folder / f"{name}.safetensors")
    meta = {"step": st.step, "gate": st.gate, "recent": st.recent, "history": st.history}
    # tagged under the store's key with the tensors' digest: a changed step or tensor is
    # refused, never resumed from under the same stage keys
    meta = sign_record({**meta, "sha256": sha256_file(folder / f"{name}.safetensors")}, PURPOSE)
    tmp = folder / f"{name}.json.tmp"
    tmp.write_text(json.dumps(meta))
    tmp.replace(folder / f"{name}.json")


def usable_checkpoint(folder: Path, cfg: TokenConfig) -> tuple[str, dict[str, Any]] | None:
    """The furthest checkpoint this config's run passes through (not beyond its cap, and not
    beyond a point where its convergence rule would already have stopped it)."""
    best: tuple[str, dict[str, Any]] | None = None
    for meta_file in folder.glob("*.json"):
        try:
            text = meta_file.read_text()
        except OSError:
            continue
        try:
            meta = json.loads(text)
        except ValueError:
            continue  # a torn write of the rolling checkpoint: ignore it, use another
        except RecursionError:  # never a torn write: nested past what the parser can read
            meta = loads_limited(text, str(meta_file))  # raises the clear error
        check_record(meta, PURPOSE, str(meta_file), f"delete {folder} to retrain the generator")
        if not (meta_file.with_suffix(".safetensors")).exists() or meta["step"] > cfg.steps:
            continue
        hist = meta["history"]
        if any(
            stops(cfg, hist[: i + 1], ev) for i, ev in enumerate(hist) if ev["step"] < meta["step"]
        ):
            continue
        if best is None or meta["step"] > best[1]["step"]:
            best = (meta_file.stem, meta)
    return best


def load_checkpoint(folder: Path, name: str, t: GeneratorTraining) -> None:
    weights = folder / f"{name}.safetensors"
    meta_file = folder / f"{name}.json"
    want = loads_limited(meta_file.read_text(), str(meta_file)).get("sha256")
    if want is not None and sha256_file(weights) != want:
        raise CorruptArtifactError(
            f"{weights}: sha256 differs from the one its checkpoint recorded; delete {folder} "
            "to retrain the generator"
        )
    tensors = read_tensors(weights, "token-generator checkpoint")
    t.enc.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("enc.")})
    t.dec.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("dec.")})
    _load_optimizer(t.opt, tensors, "opt.")
    if t.critic is not None and t.opt_c is not None:
        t.critic.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("critic.")})
        _load_optimizer(t.opt_c, tensors, "optc.")
    t.g.set_state(tensors["rng"])


def _load_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str
) -> None:
    state = opt.state_dict()
    for key, value in tensors.items():
        if key.startswith(prefix):
            i, k = key[len(prefix) :].split(".", 1)
            state["state"].setdefault(int(i), {})[k] = value
    opt.load_state_dict(state)
    # safetensors hands back contiguous tensors; moments must keep their parameter's strides
    # (channels_last convs), which the fused kernel assumes
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if torch.is_tensor(v) and v.shape == p.shape:
                    opt.state[p][k] = torch.empty_like(p).copy_(v)
