"""``ipbench sweep``: the requests of a one-field sweep (paper Fig. 2 sweeps the poisoning ratio
``gamma``), all checked before the first run starts."""

from __future__ import annotations

from ipbench.core.errors import IpbenchError
from ipbench.engine.request import RunRequest, resolve, scheme_settings


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise IpbenchError(
            f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1"
        ) from None
    if not seeds:
        raise IpbenchError("--seeds is empty; give at least one seed, e.g. 0")
    return seeds


def _values(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def swept_field(settings: dict[str, str]) -> str:
    """The one setting given several comma-separated values: the field a sweep varies."""
    many = [k for k, val in settings.items() if len(_values(val)) > 1]
    if len(many) != 1:
        given = ", ".join(many) or "none"
        raise IpbenchError(
            f"a sweep varies exactly one setting with comma-separated values "
            f"(e.g. --set gamma=0.1,0.3,0.5); fields with several values: {given}"
        )
    return many[0]


def plan(
    scheme: str, dataset: str | None, preset: str | None, settings: dict[str, str], seeds: str,
    workdir: str, data_root: str | None = None, device: str | None = None, attacks: str = "none",
) -> list[RunRequest]:  # fmt: skip
    """One request per (value, seed). Exactly one setting carries several comma-separated
    values (the swept field); a bad field or value fails here, before any training."""
    field = swept_field(settings)
    fixed = {k: v for k, v in settings.items() if k != field}
    requests = []
    for value in _values(settings[field]):
        for seed in parse_seeds(seeds):
            req = RunRequest(
                scheme=scheme, dataset=dataset, preset=preset, seed=seed,
                overrides=scheme_settings({**fixed, field: value}, scheme),
                data_root=data_root, workdir=workdir, device=device, attacks=attacks,
            )  # fmt: skip
            resolve(req)  # every name, field and range checked now, not after hours of training
            requests.append(req)
    return requests
