"""A grid of runs as steps with dependencies, so that shared stages are computed once.

Runs that share a task (dataset, network, training recipe, data sizes and seed) share the
unprotected baseline; ActiveDaemon runs that also share the token generator's settings share
that too (``shared_stage``). Launched side by side, such runs would each train the shared
stage (the cache keeps one copy, but the compute is spent twice). The plan makes those stages
steps of their own that the runs depend on:

- ``baseline``: the first run of a group of two or more runs with the same baseline trains it
  (``Runner.run(until="baseline")``), recorded under that run as ``ipbench run`` would;
- ``prepare``: a scheme's shared sub-stage (``Runner.prepare_shared``), recorded under no run,
  for two or more runs, or for one run that waits for a baseline step anyway (the two train
  side by side instead of one after the other);
- ``run``: a run's stages (its attacks too, unless they are split off);
- ``attack``: one attack of a run, after the run's main step, when a run has two or more.

The plan is pure data: an executor (ipbench.engine.executors.ray) maps each step to a task and each
dependency to an object reference; the driver reads only names, never the datasets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ipbench.core.config import content_hash, to_jsonable
from ipbench.core.identity import code_identity
from ipbench.engine.request import PRESET_FIELDS, RunRequest, resolve
from ipbench.plugin.capabilities import SharedStage

StepKind = Literal["baseline", "prepare", "run", "attack"]


@dataclass(frozen=True)
class Step:
    """One unit of work: ``request`` run as ``kind``, after the steps named in ``deps``."""

    id: str
    kind: StepKind
    request: RunRequest
    run: int | None  # index of the grid's request this step belongs to; None: shared by several
    deps: tuple[str, ...] = ()


def baseline_group(req: RunRequest) -> str:
    """What determines a run's baseline key, known without loading the data: the dataset and
    where it is read from, the network, the training recipe, the data sizes and the seed."""
    res = resolve(dataclasses.replace(req, device="cpu"))
    return content_hash(
        "baseline-group", res.dataset, req.data_root, res.model, to_jsonable(res.preset.train),
        {f: getattr(res.preset, f) for f in PRESET_FIELDS}, req.seed,
    )  # fmt: skip


def shared_group(req: RunRequest) -> str | None:
    """The identity of the scheme's shared sub-stage for this run, or None when it has none."""
    scheme = resolve(dataclasses.replace(req, device="cpu")).scheme
    found = scheme.shared_stage() if isinstance(scheme, SharedStage) else None
    if found is None:
        return None
    name, material = found
    return content_hash(
        "shared", baseline_group(req), scheme.name, code_identity(type(scheme)), name,
        to_jsonable(material),
    )  # fmt: skip


def attack_names(req: RunRequest) -> list[str]:
    return [a.name for a in resolve(dataclasses.replace(req, device="cpu")).attacks]


def plan(requests: Sequence[RunRequest], split_attacks: bool = True) -> list[Step]:
    """The steps of a grid, each after the steps it depends on."""
    fresh = [i for i, r in enumerate(requests) if not r.require_cached]
    by_base: dict[str, list[int]] = {}
    by_shared: dict[str, list[int]] = {}
    for i in fresh:
        by_base.setdefault(baseline_group(requests[i]), []).append(i)
        if (key := shared_group(requests[i])) is not None:
            by_shared.setdefault(key, []).append(i)
    steps: list[Step] = []
    needs: dict[int, list[str]] = {i: [] for i in range(len(requests))}
    for members in by_base.values():
        if len(members) < 2:  # a baseline nobody else needs is trained by its run's own step
            continue
        lead = members[0]
        step = Step(f"baseline:{lead}", "baseline", _without_attacks(requests[lead]), lead)
        steps.append(step)
        for i in members:
            needs[i].append(step.id)
    for n, members in enumerate(by_shared.values()):
        # worth a step when shared, or when it can train while the run waits for its baseline
        if len(members) < 2 and not needs[members[0]]:
            continue
        step = Step(f"prepare:{n}", "prepare", _without_attacks(requests[members[0]]), None)
        steps.append(step)
        for i in members:
            needs[i].append(step.id)
    for i, req in enumerate(requests):
        names = attack_names(req)
        split = split_attacks and len(names) >= 2
        main = Step(f"run:{i}", "run", _without_attacks(req) if split else req, i, tuple(needs[i]))
        steps.append(main)
        if split:
            for name in names:
                attack = dataclasses.replace(req, attacks=name)
                steps.append(Step(f"attack:{i}:{name}", "attack", attack, i, (main.id,)))
    return steps


def _without_attacks(req: RunRequest) -> RunRequest:
    return dataclasses.replace(req, attacks="none")
