"""Numbers as a researcher reads them: big values with SI prefixes, durations with units.

The one SI formatter of the package: terminal tables (``si(v, unit)``: ``132.5 M``) and the
metric specs' compact ``si`` format (``si(v, digits=2, sep="")``: ``132.55M``) both call it.
"""

from __future__ import annotations

SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(value: float, unit: str = "", digits: int = 1, sep: str = " ") -> str:
    """``132547456`` -> ``132.5 M``; below 1000 an integer stays an integer (``digits`` after
    the point above 1000, ``sep`` between the number and the prefix)."""
    for scale, prefix in SI:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f}{sep}{prefix}{unit}".rstrip()
    if float(value).is_integer():
        return f"{int(value)}{sep}{unit}".rstrip()
    return f"{value:.3g}{sep}{unit}".rstrip()


def duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
