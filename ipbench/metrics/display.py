"""A recorded metric as a researcher reads it on screen: its declared format and unit
(``ipbench.core.units`` formats the bare numbers). Stored values keep full precision; this is
display only.
"""

from __future__ import annotations

import math
from typing import Any

from ipbench.core.units import duration, si
from ipbench.metrics.spec import Metric

__all__ = ["duration", "si", "value_text"]


def value_text(name: str, value: float | None, spec: dict[str, Any] | None = None) -> str:
    """A recorded metric for the terminal: its declared format plus its unit; integral values
    without a declared format print as integers, big ones with SI prefixes."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    metric = Metric.from_spec(name, spec) if spec else Metric(name)
    unit = metric.unit
    if metric.fmt == "pow2":
        return f"{metric.format(value)} {unit}".rstrip()
    if metric.fmt == "si_bytes" or unit == "bytes":
        return si(value, "B")
    if metric.fmt == "si":
        return si(value, "" if unit in ("", "fraction") else unit)
    if unit == "ms":
        return f"{value:.2f} ms"
    if metric.fmt == ".2f" and float(value).is_integer() and unit not in ("%", "dB"):
        return si(value, "" if unit in ("", "fraction") else unit)
    text = metric.format(value)
    if unit == "%":
        return f"{text}%"
    if unit in ("", "fraction"):
        return text
    return f"{text} {unit}"
