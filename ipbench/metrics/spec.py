"""Typed metrics: what a recorded number means, and curves as data.

Every number ipbench records carries a ``Metric``: its unit, which direction is better for the
protection (a thief's accuracy is better low, an authorized user's high), how it is printed and
whether it headlines its stage in the leaderboard. The shared ones are declared here; a plugin
declares its own in ``metrics`` (a tuple of ``Metric``). A point of a curve (pruning rate,
fine-tuning epochs, gamma_f) is returned under an ``At`` key, so the store records the curve's
metric, parameter and x as columns and the leaderboard plots them without parsing names.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ipbench.core.units import si

# "zero": closest to 0 is best (A_od: a protection should cost authorized users nothing)
Better = Literal["higher", "lower", "zero", "neither"]
FORMATS = ("si", "si_bytes", "pow2")  # besides Python format specs such as ".2f"


@dataclass(frozen=True)
class Metric:
    """A metric's meaning: unit, better direction (for the protection), format (a spec like
    ``.2f``, or ``si``, ``si_bytes``, ``pow2``) and its headline rank in its stage (1: the
    leaderboard's column for the stage, 2: the next if 1 is absent, ...; 0: not a headline)."""

    name: str
    unit: str = ""
    better: Better = "neither"
    fmt: str = ".2f"
    headline: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            format(1.0, self.fmt)  # a bad spec fails here, where it is declared

    def format(self, value: float | None) -> str:
        """The value as the leaderboard prints it ("–" for a missing one)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        if self.fmt == "pow2":
            if value >= 2**20 and math.log2(value).is_integer():
                return f"2^{int(math.log2(value))}"
            return f"{value:.0f}"
        if self.fmt in ("si", "si_bytes"):
            return si(value, digits=2, sep="") + ("B" if self.fmt == "si_bytes" else "")
        return format(value, self.fmt)

    def rounded(self, value: float) -> float:
        """``value`` at the precision its format prints, for JSON (``98.19999933242798`` at
        ``.2f`` is ``98.2``: the noise of float32 arithmetic is not a digit of the result);
        counts (``si``, ``pow2``) to 2 decimals. Stored values keep full precision."""
        if not math.isfinite(value):
            return value
        if self.fmt in FORMATS:
            return round(value, 2) + 0.0
        found = re.search(r"\.(\d+)([a-zA-Z%]?)$", self.fmt)
        if found is None:
            return value
        digits, kind = int(found.group(1)), found.group(2)
        if kind in ("e", "E"):
            return float(f"{value:.{digits}e}") + 0.0
        if kind in ("g", "G", "n", ""):
            return float(f"{value:.{max(digits, 1)}g}") + 0.0
        return round(value, digits + 2 if kind == "%" else digits) + 0.0  # + 0.0: no -0.0

    def spec(self) -> dict[str, Any]:
        """What the store keeps with each recorded value (everything but the name)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "name"}

    @classmethod
    def from_spec(cls, name: str, spec: dict[str, Any]) -> Metric:
        known = {f.name for f in dataclasses.fields(cls)} - {"name"}
        return cls(name, **{k: v for k, v in spec.items() if k in known})


@dataclass(frozen=True, order=True)
class At:
    """One point of a curve: ``metric`` measured at ``param`` = ``x``, in series ``label``
    (e.g. the fine-tuning variant ``last``); either part may be absent."""

    metric: str
    param: str | None = None
    x: float | str | None = None
    label: str | None = None

    def __str__(self) -> str:
        """The recorded name: ``A_ud@rate=0.5``, ``A_sub@hard``, ``A_ad@last,epochs=4``."""
        parts = [self.label] if self.label is not None else []
        if self.param is not None:
            x = f"{self.x:g}" if isinstance(self.x, int | float) else str(self.x)
            parts.append(f"{self.param}={x}")
        return f"{self.metric}@{','.join(parts)}" if parts else self.metric

    @classmethod
    def parse(cls, name: str) -> At:
        """Read a recorded name back (for rows stored before curves had columns)."""
        metric, at, rest = name.partition("@")
        if not at:
            return cls(metric)
        label, param, x = None, None, None
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if eq:
                param, x = key, _number(value)
            else:
                label = part
        return cls(metric, param, x, label)


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


Results = dict[str | At, float]  # what attacks (and curves) return


def _pct(name: str, better: Better, desc: str = "") -> Metric:
    return Metric(name, "%", better, ".2f", 0, desc)


def pct(name: str, better: Better, headline: int = 0, description: str = "") -> Metric:
    """An accuracy-like percentage (two decimals)."""
    return Metric(name, "%", better, ".2f", headline, description)


# The metrics every run records (evaluate stage), by name.
SHARED: dict[str, Metric] = {
    m.name: m
    for m in (
        _pct("A_or", "higher", desc="accuracy of the unprotected model"),
        _pct("A_ad", "higher", desc="accuracy for authorized users"),
        _pct("A_ud", "lower", desc="accuracy without a credential"),
        _pct("A_od", "zero", desc="A_ad - A_or (closer to 0 is better)"),
        _pct("A_pd", "higher", desc="A_ad - A_ud"),
        _pct("A_td", "lower", desc="accuracy with a fake credential"),
        _pct("A_dec", "higher", desc="identity bits decoded correctly"),
        _pct("A_dec_raw", "higher", desc="code bits decoded correctly, before BCH"),
        _pct("id_rate", "higher", desc="queries whose identity decodes exactly"),
        _pct("bch_failures", "lower", desc="queries BCH could not correct"),
        Metric("PSNR", "dB", "higher"),
        Metric("SSIM", "", "higher", ".3f"),
        Metric("ERGAS", "", "lower"),
        Metric("LPIPS", "", "lower", ".4f"),
        Metric("users_evaluated", "users", "neither", ".0f"),
        Metric("capacity", "users", "higher", "pow2"),
        Metric("capacity_published", "users", "higher", ".0f"),
        Metric("capacity_used", "users", "neither", ".0f"),
        *(Metric(n, "", "lower", "si") for n in ("params", "params_base", "flops", "flops_base")),
        Metric("credential_flops", "", "lower", "si"),
        Metric("peak_act_bytes", "bytes", "lower", "si_bytes"),
        Metric("peak_act_bytes_base", "bytes", "lower", "si_bytes"),
        *(Metric(n, "ms", "lower") for n in ("latency_ms", "latency_ms_base", "credential_ms")),
        Metric("decrypt_ms", "ms", "lower"),
    )
}


def legacy_metric(name: str) -> Metric:
    """The meaning of a number recorded before metrics were typed, from its name: the rules
    the leaderboard used to print it by (kept so an older store renders as it did)."""
    base = name.split("@")[0].split(":")[-1]
    if base.startswith("capacity"):
        return Metric(name, "users", fmt="pow2")
    if base.startswith(("params", "flops", "credential_flops", "credential_params", "buffers")):
        return Metric(name, "", fmt="si")
    if "bytes" in base:
        return Metric(name, "bytes", fmt="si_bytes")
    if base in ("SSIM", "LPIPS"):
        return Metric(name, fmt=".3f" if base == "SSIM" else ".4f")
    if base.endswith("_pct"):
        return Metric(name, "%", fmt=".6f")
    if base.startswith("users_"):
        return Metric(name, "users", fmt=".0f")
    return Metric(name)


def describe(name: str, declared: tuple[Metric, ...] = ()) -> Metric:
    """The ``Metric`` of a recorded name (``A_ud`` or a curve point ``A_ud@rate=0.5``): the
    plugin's declaration of its base name, else the shared one, else the rules older stores
    were printed by. A curve point is never a headline."""
    base = name.split("@")[0]
    found = next((m for m in declared if m.name == base), None)
    if found is None:
        found = SHARED.get(base) or legacy_metric(base)
    return dataclasses.replace(found, name=name, headline=found.headline if base == name else 0)


def headline_row(
    rows: Iterable[Mapping[str, Any]], declared: tuple[str, ...] = ()
) -> Mapping[str, Any] | None:
    """The recorded row (``Store.metrics``) that headlines its stage: the lowest headline rank
    its stored meaning gives; for rows stored without a meaning, the first of ``declared`` (the
    plugin's ``headline_names()``) recorded. Curve points and missing values never headline."""
    plain = [r for r in rows if "@" not in r["name"] and r.get("value") is not None]
    ranked = [
        (int(r["spec"]["headline"]), i) for i, r in enumerate(plain)
        if isinstance(r.get("spec"), dict) and r["spec"].get("headline")
    ]  # fmt: skip
    if ranked:
        return plain[min(ranked)[1]]
    by_name = {r["name"]: r for r in plain}
    return next((by_name[n] for n in declared if n in by_name), None)
