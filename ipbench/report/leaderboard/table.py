"""One leaderboard table as data: the markdown page and the HTML page are two views of it.

A cell keeps its text (as both pages print it), the number behind it (what the HTML sorts by),
the runs it comes from (what the HTML links to) and, for a published value, its source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipbench.metrics.spec import Better

ARROW = {"higher": "↑", "lower": "↓", "zero": "→ 0"}  # better for the protection; "neither": none


@dataclass
class Cell:
    """One table cell; ``value`` None sorts last whichever way a column is sorted."""

    text: str = ""
    value: float | str | None = None
    runs: tuple[str, ...] = ()  # the runs the number comes from, in seed order
    stage: str = ""  # the stage of those runs it was recorded in (the run page's anchor)
    source: str = ""  # a published value's source
    foot: int = 0  # footnote number (0: none)

    def markdown(self) -> str:
        return self.text + (f"[^{self.foot}]" if self.foot else "")


@dataclass
class Column:
    """A header: the metric (or label) it shows, which way is better, whether it holds
    published numbers."""

    name: str
    better: Better = "neither"
    paper: bool = False

    @property
    def title(self) -> str:
        arrow = ARROW.get(self.better, "")
        return f"{self.name} {arrow}" if arrow else self.name


@dataclass
class Table:
    """Rows of cells under columns; ``flags`` holds the warnings of a flagged row's first cell
    (a scheme whose protection did not take)."""

    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    flags: dict[int, list[str]] = field(default_factory=dict)

    def markdown(self) -> str:
        head = [c.title for c in self.columns]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for i, row in enumerate(self.rows):
            cells = [c.markdown().replace("|", "\\|") for c in row]
            if i in self.flags:
                cells[0] += " ⚠"
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def label(text: str) -> Cell:
    """A text cell (scheme names, settings), sorted alphabetically."""
    return Cell(text, text)
