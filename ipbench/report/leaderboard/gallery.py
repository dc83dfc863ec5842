"""The token gallery (paper Figs. 3 and 9): clean, authorized and amplified-token images for
each input-space scheme, from the examples its evaluation stored. Runs stored before evaluation
kept examples have no gallery row: drawing them would re-run today's plugin code on an old run,
so the picture would no longer be the run's."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch

from ipbench.core.tensorio import read_tensors
from ipbench.store.bundle import TOKEN_EXAMPLES, token_examples_file
from ipbench.store.results import Store

AMPLIFY = 10.0  # |x_a - x| x10, clipped, as in the papers' token figures


def stored_rows(
    runs: pd.DataFrame, eval_folders: dict[str, str | None]
) -> tuple[list[tuple[str, torch.Tensor, torch.Tensor]], set[str]]:
    """(scheme, clean, authorized) that runs stored with their evaluation, for the first
    default run of each scheme that has them; and the schemes served."""
    out, served = [], set()
    for r in runs[runs["default"]].itertuples():
        folder = eval_folders.get(r.run_id)
        path = Path(folder) / TOKEN_EXAMPLES if folder else None
        if r.scheme in served or path is None or not path.exists():
            continue
        ex = read_tensors(path, "token examples")
        out.append((r.scheme, ex["clean"], ex["authorized"]))
        served.add(r.scheme)
    return out, served


def draw(rows: list[tuple[str, torch.Tensor, torch.Tensor]], path: Path, where: str = "") -> None:
    """One row per scheme and image: clean | authorized | amplified token; the title names
    ``where`` (dataset and preset)."""
    n_img = len(rows[0][1])
    # constrained layout keeps the figure's title above the first row's panel titles
    fig, axes = plt.subplots(len(rows) * n_img, 3, figsize=(4.5, 1.6 * len(rows) * n_img + 0.6),
                             squeeze=False, layout="constrained")  # fmt: skip
    if where:
        fig.suptitle(f"tokens: {where}", fontsize=8)
    for i, (scheme, x, xa) in enumerate(rows):
        token = ((xa - x).abs() * AMPLIFY).clamp(0, 1)
        for j in range(n_img):
            ax_row = axes[i * n_img + j]
            for ax, img, title in zip(ax_row, (x[j], xa[j], token[j]),
                                      ("clean", f"{scheme}: authorized", f"|x_a-x| x{AMPLIFY:g}"),
                                      strict=True):  # fmt: skip
                ax.imshow(img.permute(1, 2, 0).squeeze().numpy(), interpolation="nearest")
                ax.set_axis_off()
                if j == 0:
                    ax.set_title(title, fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def gallery(
    runs: pd.DataFrame, store: Store, dataset: str, folder: Path, data_root: str | None = None,
    preset: str = "",
) -> tuple[Path | None, list[str]]:  # fmt: skip
    """Draw the gallery from the token examples the runs stored with their evaluation (or that
    a bundle import put beside them): stored images only, never today's plugin code re-run on
    an old run. ``data_root`` is accepted for compatibility and unused."""

    def examples_folder(run_id: str) -> str | None:
        found = token_examples_file(store, run_id)
        return str(found.parent) if found else None

    rows, _served = stored_rows(runs, {r: examples_folder(r) for r in runs["run_id"]})
    if not rows:
        return None, []
    rows.sort(key=lambda row: row[0])
    path = folder / "tokens.png"
    draw(rows, path, f"{dataset}, preset {preset}" if preset else dataset)
    return path, []
