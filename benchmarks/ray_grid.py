"""Wall time of an 8-run smoke grid with the local and the Ray executor, and Ray's overhead.

The grid: M-LOCK at the smoke preset, 4 protection-epoch settings x 2 seeds (8 runs on 2
shared baselines, 18 stages), no attacks, each executor on a fresh work directory:

- local: the runs one after another in this process (torch at ``--local-threads`` threads,
  default its own default: one per core);
- ray: a local Ray cluster with ``--cpus`` CPUs, one CPU per task (torch at one thread each),
  timed cold (the cluster's worker processes import torch and ipbench on their first task)
  and again on a fresh work directory with the workers warm;
- the same Ray grid a third time on the warm work directory: every stage is cached, so its
  wall time over the number of tasks is what a task costs ipbench beyond its stages
  (scheduling, loading the data and the cached models, rows back to the driver);
- Ray alone: the round trip of no-op tasks asking for one CPU, one at a time (latency) and
  many at once (throughput).

    python benchmarks/ray_grid.py                 # needs the extra: pip install -e ".[ray]"
    python benchmarks/ray_grid.py --cpus 2 --json ray_grid.json

Wall times on a shared machine vary with its load; the script prints the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("IPBENCH_PROGRESS", "0")

from ipbench.engine.executors import execute
from ipbench.engine.sweep import plan


def grid(workdir: Path) -> list:
    settings = {"protect_epochs": "1,2,3,4"}
    return plan("mlock", "synthetic", "smoke", settings, "0,1", str(workdir), device="cpu")


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--local-threads", type=int, help="torch threads of the local executor")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    import ray
    import torch

    if args.local_threads:
        torch.set_num_threads(args.local_threads)

    figures: dict[str, float | str] = {
        "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "local_threads": torch.get_num_threads(),
    }
    root = Path(tempfile.mkdtemp(prefix="ipbench-ray-grid-"))

    def ok(outcomes) -> None:
        bad = [o.error for o in outcomes if o.status != "done"]
        assert not bad and len(outcomes) == 8, bad

    wall, outcomes = timed(lambda: execute(grid(root / "local"), executor="local"))
    ok(outcomes)
    figures["local_s"] = wall
    figures["stage_s_total"] = sum(o.stage_s for o in outcomes)

    figures["ray_init_s"], _ = timed(
        lambda: ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    )
    for name, folder in (("ray_cold_s", "ray-cold"), ("ray_warm_s", "ray-warm")):
        wall, outcomes = timed(lambda f=folder: execute(grid(root / f), executor="ray"))
        ok(outcomes)
        figures[name] = wall
    wall, outcomes = timed(lambda: execute(grid(root / "ray-warm"), executor="ray"))
    ok(outcomes)
    assert all(not o.computed for o in outcomes)
    tasks = 10  # 8 runs + 2 baseline tasks
    figures["ray_all_cached_s"] = wall
    figures["ipbench_per_task_s"] = wall * args.cpus / tasks

    @ray.remote(num_cpus=1)
    def noop(x: int) -> int:
        return x

    ray.get([noop.remote(i) for i in range(2 * args.cpus)])  # workers started
    n = 200
    wall, _ = timed(lambda: [ray.get(noop.remote(i)) for i in range(n)])
    figures["ray_task_latency_ms"] = 1000 * wall / n
    wall, _ = timed(lambda: ray.get([noop.remote(i) for i in range(n)]))
    figures["ray_task_throughput_per_s"] = n / wall
    ray.shutdown()
    figures["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())

    print(f"8-run smoke grid (M-LOCK, 4 settings x 2 seeds, 2 shared baselines), {args.cpus} CPUs")
    print(f"  load average before: {figures['load_before']}, after: {figures['load_after']}")
    print(f"  local executor, {figures['local_threads']} thread(s): {figures['local_s']:7.1f} s "
          f"(stages alone {figures['stage_s_total']:.1f} s)")  # fmt: skip
    print(f"  ray: start a local cluster   {figures['ray_init_s']:7.1f} s")
    print(f"  ray executor, cold workers:  {figures['ray_cold_s']:7.1f} s")
    print(f"  ray executor, warm workers:  {figures['ray_warm_s']:7.1f} s")
    print(f"  ray executor, all cached:    {figures['ray_all_cached_s']:7.1f} s "
          f"= {figures['ipbench_per_task_s']:.2f} s per task per CPU")  # fmt: skip
    print(f"  ray no-op task round trip:   {figures['ray_task_latency_ms']:7.2f} ms one at a "
          f"time, {figures['ray_task_throughput_per_s']:.0f} tasks/s in a batch")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
