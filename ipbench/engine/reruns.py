"""What a run on a stored run computes beyond the cache: the ``--recompute`` names it accepts and
what they leave cached, and the attacks ``--attacks all`` holds back from an old run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from ipbench.core.errors import IpbenchError
from ipbench.engine.request import CORE_STAGES, Resolved, RunRequest
from ipbench.plugin.attack import Attack
from ipbench.plugin.capabilities import SharedStage


def check_recompute(names: tuple[str, ...], res: Resolved, artifacts: Path) -> set[str]:
    """``--recompute`` names as stage folder names; an unknown one is an error listing the
    valid ones (the run's stages and the sub-stage folders the work directory holds)."""
    subs = sorted(p.name for p in artifacts.iterdir() if p.is_dir()) if artifacts.is_dir() else []
    mine = [f"attack:{a.name}" for a in res.attacks]
    valid = [*CORE_STAGES, "attacks", *mine, *(s for s in subs if s not in CORE_STAGES)]
    valid = [v for v in dict.fromkeys(valid) if not v.startswith("attack-")]
    out: set[str] = set()
    for name in names:
        if name == "attacks":
            out |= {f"attack-{a.name}" for a in res.attacks}
        elif name in valid:
            out.add(name.replace(":", "-"))
        else:
            raise IpbenchError(
                f"--recompute {name!r} is not a stage of this run; valid: {', '.join(valid)}"
            )
    return out


def recompute_notes(res: Resolved, recompute: set[str]) -> list[str]:
    """What ``--recompute`` leaves cached that a user may expect it to reach: ``protect``
    keeps a scheme's shared sub-stage (ActiveDaemon's ``tokens``)."""
    scheme = res.scheme
    if "protect" not in recompute or not isinstance(scheme, SharedStage):
        return []
    sub = scheme.shared_stage()
    if sub is None or sub[0] in recompute:
        return []
    return [
        f"--recompute protect keeps {scheme.name}'s {sub[0]} sub-stage; add --recompute "
        f"{sub[0]} to recompute it too"
    ]


def unmet_attacks(req: RunRequest, res: Resolved, stored: Any) -> list[Attack]:
    """The attacks ``--attacks all`` would add to stored run ``stored`` that none of its
    earlier attempts knew (a plugin installed since); none when asked for by name, with
    ``new_attacks``, or for a new run."""
    if req.attacks != "all" or req.new_attacks or stored is None:
        return []
    known = stored.provenance.get("plugin_code", {})
    return [a for a in res.attacks if f"attack:{a.name}" not in known]


def held_note(run_id: str, held: list[Attack]) -> str:
    """The line that names the attacks ``unmet_attacks`` held back, and the way to run them."""
    names = escape(", ".join(a.name for a in held))
    return (
        f"[yellow]not run on stored run {run_id}:[/] {names} (attacks it has not met before); "
        "add --new-attacks to run them on it, or name them in --attacks"
    )
