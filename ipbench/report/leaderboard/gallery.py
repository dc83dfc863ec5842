"""The token gallery (paper Figs. 3 and 9): clean, authorized and amplified-token images for
each input-space scheme, from the examples its evaluation stored (older runs: rebuilt from the
stored protected artefact with today's code)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch

from ipbench.core.config import override
from ipbench.core.errors import IpbenchError
from ipbench.core.tensorio import read_tensors
from ipbench.plugin.capabilities import InputSpaceToken
from ipbench.plugin.evaluate import TOKEN_EXAMPLES, token_examples
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


def token_rows(
    runs: pd.DataFrame, folders: dict[str, str | None], configs: dict[str, dict],
    images: torch.Tensor,
) -> tuple[list[tuple[str, torch.Tensor, torch.Tensor]], list[str]]:  # fmt: skip
    """For runs stored before evaluation kept its token examples: rebuilt from the stored
    protected artefact with today's scheme code (and the dataset's test images). (scheme,
    clean, authorized) for the first default run of each input-space scheme, and why any
    scheme was left out (an artefact that is gone, a scheme no longer registered)."""
    from ipbench.core.registry import schemes

    out, skipped = [], []
    for r in runs[runs["default"]].drop_duplicates("scheme").itertuples():
        if r.scheme not in schemes or not issubclass(schemes.get(r.scheme), InputSpaceToken):
            continue
        folder = folders.get(r.run_id)
        try:
            cls = schemes.get(r.scheme)
            cfg = override(cls.Config(), configs.get(r.run_id, {}), "scheme")
            scheme = cls(cfg)
            if not folder or not Path(folder).exists():
                raise IpbenchError(f"protected artefact {folder or '(none)'} is not there")
            protected = scheme.load_protected(folder)
            ex = token_examples(scheme, protected, images, r.seed)
        except (IpbenchError, OSError, RuntimeError, TypeError) as exc:
            skipped.append(f"{r.scheme}: {exc}")
            continue
        out.append((r.scheme, ex["clean"], ex["authorized"]))
    return out, skipped


def draw(rows: list[tuple[str, torch.Tensor, torch.Tensor]], path: Path, where: str = "") -> None:
    """One row per scheme and image: clean | authorized | amplified token; the title names
    ``where`` (dataset and preset)."""
    n_img = len(rows[0][1])
    fig, axes = plt.subplots(len(rows) * n_img, 3, figsize=(4.5, 1.6 * len(rows) * n_img + 0.4),
                             squeeze=False)  # fmt: skip
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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def gallery(
    runs: pd.DataFrame, store: Store, dataset: str, folder: Path, data_root: str | None = None,
    preset: str = "",
) -> tuple[Path | None, list[str]]:  # fmt: skip
    """Draw the gallery from the token examples the runs stored; runs stored before that are
    rebuilt when the dataset's test images are available (else a note says why not)."""
    from ipbench.ml.datasets import load_dataset

    def artefact(run_id: str, stage: str) -> str | None:
        st = store.stage(run_id, stage)
        return st.get("artifact") if st else None

    from ipbench.core.registry import schemes

    rows, served = stored_rows(runs, {r: artefact(r, "evaluate") for r in runs["run_id"]})
    tokens = [s for s in set(runs["scheme"]) - served if s in schemes]
    tokens = [s for s in tokens if issubclass(schemes.get(s), InputSpaceToken)]
    older = runs[runs["scheme"].isin(tokens)]
    skipped: list[str] = []
    if len(older[older["default"]]):
        try:
            ds = load_dataset(dataset, data_root, download=False)
        except (IpbenchError, OSError) as exc:
            ds = None
            skipped = [f"token gallery left out: {dataset} test images unavailable ({exc})"]
        if ds is not None:
            configs: dict[str, dict] = {}
            for run_id in older["run_id"]:
                rec = store.get_run(run_id, exact=True)
                configs[run_id] = rec.config.get("scheme_config", {}) if rec else {}
            protect = {r: artefact(r, "protect") for r in older["run_id"]}
            rebuilt, skipped = token_rows(older, protect, configs, ds.test.x)
            rows += rebuilt
    if not rows:
        return None, skipped
    rows.sort(key=lambda row: row[0])
    path = folder / "tokens.png"
    draw(rows, path, f"{dataset}, preset {preset}" if preset else dataset)
    return path, skipped
