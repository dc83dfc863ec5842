"""The token gallery (paper Figs. 3 and 9): clean, authorized and amplified-token images for
each input-space scheme, rebuilt from the stored protected artefact."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch

from ipbench.capabilities import InputSpaceToken, capability
from ipbench.config import override
from ipbench.errors import IpbenchError
from ipbench.evaluate import eval_users
from ipbench.store import Store
from ipbench.training import to_float_images

AMPLIFY = 10.0  # |x_a - x| x10, clipped, as in the papers' token figures


def token_rows(
    runs: pd.DataFrame, folders: dict[str, str | None], configs: dict[str, dict],
    images: torch.Tensor, n: int = 4,
) -> tuple[list[tuple[str, torch.Tensor, torch.Tensor]], list[str]]:  # fmt: skip
    """(scheme, clean, authorized) for the first default run of each input-space scheme, and
    why any scheme was left out (an artefact that is gone, a scheme no longer registered)."""
    from ipbench.registry import schemes

    out, skipped = [], []
    x = to_float_images(images[:n])
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
            cred = scheme.authorize(protected, eval_users(r.seed, 1)[0])
            with torch.no_grad():
                xa = capability(scheme, InputSpaceToken).apply(cred, x).clamp(0, 1).cpu()
        except (IpbenchError, OSError, RuntimeError, TypeError) as exc:
            skipped.append(f"{r.scheme}: {exc}")
            continue
        out.append((r.scheme, x, xa))
    return out, skipped


def draw(rows: list[tuple[str, torch.Tensor, torch.Tensor]], path: Path) -> None:
    """One row per scheme and image: clean | authorized | amplified token."""
    n_img = len(rows[0][1])
    fig, axes = plt.subplots(len(rows) * n_img, 3, figsize=(4.5, 1.6 * len(rows) * n_img),
                             squeeze=False)  # fmt: skip
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
    runs: pd.DataFrame, store: Store, dataset: str, folder: Path, data_root: str | None = None
) -> tuple[Path | None, list[str]]:
    """Draw the gallery when the dataset's test images are available; else say why not."""
    from ipbench.datasets import load_dataset

    try:
        ds = load_dataset(dataset, data_root, download=False)
    except (IpbenchError, OSError) as exc:
        return None, [f"token gallery left out: {dataset} test images unavailable ({exc})"]
    folders: dict[str, str | None] = {}
    configs: dict[str, dict] = {}
    for run_id in runs["run_id"]:
        st = store.stage(run_id, "protect")
        folders[run_id] = st.get("artifact") if st else None
        rec = store.get_run(run_id, exact=True)
        configs[run_id] = rec.config.get("scheme_config", {}) if rec else {}
    rows, skipped = token_rows(runs, folders, configs, ds.test.x)
    if not rows:
        return None, skipped
    path = folder / "tokens.png"
    draw(rows, path)
    return path, skipped
