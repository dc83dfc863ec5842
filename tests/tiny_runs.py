"""A tiny finished run and the helpers the reliability tests share (issue 21): small enough
for the fast tier, a protected model (mlock trains) in a few seconds."""

from __future__ import annotations

from pathlib import Path

from ipbench.engine.runner import Runner, RunRequest

TINY = {"epochs": "1", "max_train": "256", "max_test": "100", "quality_images": "50"}
DATA = "synthetic:600"  # generated in a fifth of a second (the default 5000 take seconds)
RUN = ["run", "--preset", "smoke", "--device", "cpu", "--attacks", "none", "-d", DATA]


def tiny_request(workdir: Path, **kw) -> RunRequest:
    base = {
        "scheme": "mlock",
        "preset": "smoke",
        "device": "cpu",
        "attacks": "none",
        "dataset": DATA,
        "workdir": str(workdir),
        "overrides": dict(TINY),
    }
    return RunRequest(**{**base, **kw})


def set_args(settings: dict[str, str]) -> list[str]:
    return [arg for k, v in settings.items() for arg in ("--set", f"{k}={v}")]


def run_tiny(workdir: Path, **kw):
    return Runner(tiny_request(workdir, **kw), log=lambda _m: None).run()


def timing(name: str) -> bool:
    """Wall-clock measurements (latencies), the only numbers a rerun may change."""
    return name.endswith("_ms") or "_ms_" in name


def values(outcome) -> dict[tuple[str, str], float]:
    return {(m["stage"], m["name"]): m["value"] for m in outcome.metrics if not timing(m["name"])}
