"""A recorded metric as a researcher reads it on screen: its declared format and unit
(``ipbench.core.units`` formats the bare numbers). Stored values keep full precision; this is
display only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ipbench.core.units import duration, si
from ipbench.metrics.spec import Metric, describe

__all__ = ["column_metric", "duration", "json_row", "si", "value_text"]

# JSON fields kept as given: a curve point's parameter value (a pruning rate 0.125 is exact)
AS_GIVEN = ("x",)


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


def column_metric(column: str) -> str:
    """The metric a table column holds: ``A_pd``, ``A_pd_std`` and ``finetune(epochs=1) A_ud``
    (an attack's headline column) hold ``A_pd``, ``A_pd`` and ``A_ud``."""
    return column.rsplit(" ", 1)[-1].removesuffix("_std")


def json_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row for ``--json``: every float at its metric's declared precision (a recorded
    metric's ``value`` by its stored ``spec``, a column or field by the metric it names,
    ``Metric``'s default ``.2f`` for other numbers such as ``wall_s``; nested rows alike),
    NaN as None; ``x`` (a curve's parameter value) as given."""
    spec = row.get("spec") if isinstance(row.get("spec"), dict) else None
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "value" and "name" in row and isinstance(value, float) and not math.isnan(value):
            name = str(row["name"])
            out[key] = (Metric.from_spec(name, spec) if spec else describe(name)).rounded(value)
        else:
            out[key] = _json_value(str(key), value)
    return out


def _json_value(key: str, value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if key in AS_GIVEN else describe(column_metric(key)).rounded(float(value))
    if isinstance(value, Mapping) and key != "spec":
        return json_row(value)
    if isinstance(value, list | tuple):
        return [_json_value(key, v) for v in value]
    return value
