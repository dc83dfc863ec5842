"""In-memory image datasets as uint8 tensors, and the owner / attacker / test splits."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ipbench.core.errors import IpbenchError


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 ``(N, C, H, W)`` and labels as int64 ``(N,)``."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.ndim != 4:
            raise IpbenchError(
                f"images must be uint8 (N, C, H, W), got {self.x.dtype} {tuple(self.x.shape)}"
            )
        if self.y.ndim != 1 or len(self.y) != len(self.x):
            raise IpbenchError(
                f"labels must be (N,) with N={len(self.x)}, got {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx: torch.Tensor) -> ImageSet:
        return ImageSet(self.x[idx], self.y[idx])


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: a training and a test set plus what models need to know about it."""

    name: str
    train: ImageSet
    test: ImageSet
    num_classes: int
    classes: tuple[str, ...] = ()
    # The per-channel statistics a model normalises with (computed on the training set).
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.x.shape[1:]
        return int(c), int(h), int(w)

    def fingerprint(self) -> str:
        """A cheap content hash, so a changed file on disk invalidates cached stages."""
        import hashlib

        h = hashlib.sha256()
        for t in (self.train.x, self.train.y, self.test.x, self.test.y):
            flat = t.reshape(-1)
            step = max(1, flat.numel() // 65536)
            h.update(str(tuple(t.shape)).encode())
            h.update(flat[::step].contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units of a uint8 image tensor."""
    xf = x[: min(len(x), 20000)].float().div_(255)
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())


MAX_CLASSES = 100_000  # more is a label column holding something else (ids, pixel values)


def check_loaded(name: str, train: ImageSet, test: ImageSet, num_classes: int | None) -> int:
    """What a reader loaded, checked before anything trains on it; returns the class count.

    Both splits non-empty, images of one shape, labels that are class indices in range, the
    test labels among the training ones, and two or more classes. Each problem is one line
    naming the dataset and what is wrong.
    """
    for split, part in (("training", train), ("test", test)):
        if len(part) == 0:
            raise IpbenchError(f"{name}: the {split} split is empty")
    if train.x.shape[1:] != test.x.shape[1:]:
        tr, te = ("x".join(map(str, t.x.shape[1:])) for t in (train, test))
        raise IpbenchError(
            f"{name}: training images are {tr} (CxHxW) but test images are {te}; both splits "
            "need the same channels and size"
        )
    for split, part in (("training", train), ("test", test)):
        if part.y.dtype != torch.int64:
            raise IpbenchError(f"{name}: {split} labels are {part.y.dtype}, not class indices")
        low, high = int(part.y.min()), int(part.y.max())
        if low < 0:
            raise IpbenchError(f"{name}: {split} label {low} is negative; labels are 0..K-1")
        if high >= (num_classes or MAX_CLASSES):
            limit = num_classes or MAX_CLASSES
            raise IpbenchError(f"{name}: {split} label {high} outside 0..{limit - 1}")
    present = torch.unique(train.y)
    if len(present) < 2:
        raise IpbenchError(
            f"{name}: the training split has {len(present)} class; a classifier needs two or more"
        )
    unseen = sorted(set(torch.unique(test.y).tolist()) - set(present.tolist()))
    if unseen:
        shown = ", ".join(map(str, unseen[:5])) + (" ..." if len(unseen) > 5 else "")
        raise IpbenchError(
            f"{name}: test labels {shown} never occur in the training split "
            f"(training labels {int(present.min())}..{int(present.max())})"
        )
    return num_classes or int(present.max()) + 1


def make_dataset(
    name: str, train: ImageSet, test: ImageSet, classes: tuple[str, ...] | None = None,
    num_classes: int | None = None,
) -> Dataset:  # fmt: skip
    """Wrap loaded tensors after ``check_loaded``; ``num_classes`` defaults to the largest
    training label + 1."""
    num_classes = check_loaded(name, train, test, num_classes)
    if classes is None or len(classes) < num_classes:
        classes = tuple(str(i) for i in range(num_classes))
    mean, std = channel_stats(train.x)
    return Dataset(name, train, test, num_classes, tuple(classes), mean, std)


@dataclass(frozen=True)
class Splits:
    """What each party holds: the owner trains on ``owner``; the thief has ``attacker``.

    The two come from the dataset's training set and are disjoint; ``test`` is the held-out
    evaluation set nobody trains on.
    """

    dataset: Dataset
    owner: ImageSet
    attacker: ImageSet
    test: ImageSet
    owner_index: torch.Tensor
    attacker_index: torch.Tensor


def make_splits(
    ds: Dataset,
    seed: int,
    attacker_fraction: float = 0.1,
    max_train: int | None = None,
    max_test: int | None = None,
) -> Splits:
    """Deterministic per seed: the same seed gives the same owner and attacker images."""
    if not 0.0 <= attacker_fraction < 1.0:
        raise IpbenchError(f"attacker_fraction must be in [0, 1), got {attacker_fraction}")
    g = torch.Generator().manual_seed(10_007 * seed + 1)
    perm = torch.randperm(len(ds.train), generator=g)
    n_att = round(attacker_fraction * len(perm))
    att_idx, own_idx = perm[:n_att], perm[n_att:]
    if max_train is not None:
        own_idx = own_idx[:max_train]
        att_idx = att_idx[: max(1, round(max_train * attacker_fraction))] if n_att else att_idx
    own_idx, att_idx = own_idx.sort().values, att_idx.sort().values
    test = ds.test
    if max_test is not None and max_test < len(test):
        tperm = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed + 7))
        test = test.subset(tperm[:max_test].sort().values)
    return Splits(ds, ds.train.subset(own_idx), ds.train.subset(att_idx), test, own_idx, att_idx)
