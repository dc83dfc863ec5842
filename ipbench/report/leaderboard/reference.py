"""Published numbers (``reference.csv``, shipped inside the package): read and checked, every
row with a source."""

from __future__ import annotations

import csv
import io
import math
from importlib.resources import files
from pathlib import Path

import pandas as pd

from ipbench.core.errors import IpbenchError

COLUMNS = ("scheme", "dataset", "model", "metric", "value", "source", "note")
REQUIRED = ("scheme", "dataset", "metric", "value", "source")
ANY_DATASET = "*"  # a published figure that holds for every dataset (e.g. parameter counts)
# ``model`` names the network the paper measured, as ipbench names it where ipbench has it
# (resnet18, lenet5), else as the paper does (wrn: depth not stated); empty: the paper does not
# say. ``any``: the figure does not depend on the protected network (a user capacity). The
# leaderboard puts a published value beside a measured one only when this matches the runs'.
ANY_MODEL = "any"


REFERENCE_NAME = (
    "ipbench/report/leaderboard/reference.csv"  # where the packaged copy sits in the source
)


def default_text() -> str:
    """The packaged reference table (package data, so it is there in any installation)."""
    return files("ipbench.report.leaderboard").joinpath("reference.csv").read_text(encoding="utf-8")


def load_reference(path: str | Path | None = None) -> pd.DataFrame:
    """The reference table (``path``, else the packaged one); a malformed file is an error
    naming the file, the line and why."""
    if path is None:
        text, where_file = default_text(), REFERENCE_NAME
    else:
        path = Path(path)
        if not path.is_file():
            raise IpbenchError(f"reference file {path} does not exist or is not a file")
        try:
            text, where_file = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise IpbenchError(
                f"reference file {path} is not a readable UTF-8 CSV ({exc})"
            ) from None
        if "\x00" in text:
            raise IpbenchError(f"reference file {path} holds binary data, not a CSV table")
    return _parse(text, where_file)


def _parse(text: str, path: str) -> pd.DataFrame:
    rows: list[dict[str, object]] = []
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        header = tuple(reader.fieldnames or ())
        if header != COLUMNS:
            raise IpbenchError(
                f"{path}: header {','.join(header) or '(empty)'} should be {','.join(COLUMNS)}"
            )
        for line, row in enumerate(reader, start=2):
            where = f"{path} line {line}"
            if None in row or any(v is None for v in row.values()):
                raise IpbenchError(f"{where}: expected {len(COLUMNS)} fields ({','.join(COLUMNS)})")
            empty = [c for c in REQUIRED if not row[c].strip()]
            if empty:
                raise IpbenchError(f"{where}: empty {', '.join(empty)} (every row needs a source)")
            try:
                value = float(row["value"])
            except ValueError:
                raise IpbenchError(f"{where}: value {row['value']!r} is not a number") from None
            if not math.isfinite(value):
                raise IpbenchError(f"{where}: value {row['value']!r} is not finite")
            rows.append({**{c: row[c].strip() for c in COLUMNS}, "value": value})
    ref = pd.DataFrame(rows, columns=list(COLUMNS))
    dup = ref[ref.duplicated(["scheme", "dataset", "metric"], keep=False)]
    if len(dup):
        first = dup.iloc[0]
        raise IpbenchError(
            f"{path}: {first['scheme']}/{first['dataset']}/{first['metric']} is given twice"
        )
    return ref


def published(ref: pd.DataFrame, scheme: str, dataset: str, metric: str) -> pd.Series | None:
    """The reference row for (scheme, dataset, metric); a dataset-specific row beats ``*``."""
    hit = ref[(ref.scheme == scheme) & (ref.metric == metric)]
    for ds in (dataset, ANY_DATASET):
        rows = hit[hit.dataset == ds]
        if len(rows):
            return rows.iloc[0]
    return None
