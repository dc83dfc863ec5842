"""Numbers as a researcher reads them on screen: integers as integers, big values with SI
prefixes, units on times and sizes. (Stored values keep full precision; this is display only.)
"""

from __future__ import annotations

import math
from typing import Any

from ipbench.metric import Metric

SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(value: float, unit: str = "") -> str:
    """``132547456`` -> ``132.5 M``; below 1000 an integer stays an integer."""
    for scale, prefix in SI:
        if abs(value) >= scale:
            return f"{value / scale:.1f} {prefix}{unit}".rstrip()
    if float(value).is_integer():
        return f"{int(value)} {unit}".rstrip()
    return f"{value:.3g} {unit}".rstrip()


def duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


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
