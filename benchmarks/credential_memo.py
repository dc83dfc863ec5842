"""What the memo of credentialed images (``ipbench.plugin.credential_memo``) saves, and that it
changes nothing: one attack on one scheme's smoke run, in two fresh stores under the public
demo key, once as shipped and once with the memo switched off; prints both wall times and
whether every metric of the run came out bit for bit the same.

The default is the case that motivated it: the resampling control, whose credential is a
32 -> 224 -> 32 resampling, under the fine-tuning attack, which scores every fine-tuned model
on the same test images (2026-12-08, one thread beside two campaign jobs: 134 s under
cProfile without the memo, 50.8 s with it, 38 metrics equal).

    python benchmarks/credential_memo.py
    python benchmarks/credential_memo.py --scheme activedaemon --attack fine-pruning
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WITHOUT_MEMO = (
    "import sys; import ipbench.plugin.evaluate as e; e.memo_for = lambda *a, **k: None; "
    "from ipbench.cli.main import main; sys.argv = ['ipbench', *sys.argv[1:]]; main()"
)
WITH_MEMO = "import sys; from ipbench.cli.main import main; sys.argv[0] = 'ipbench'; main()"


def run(code: str, workdir: Path, scheme: str, attack: str) -> tuple[float, dict[str, float]]:
    args = ["run", "-s", scheme, "--preset", "smoke", "-d", "synthetic", "--demo-key",
            "--attacks", attack, "--workdir", str(workdir)]  # fmt: skip
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True)
    wall = time.perf_counter() - start
    shown = subprocess.run(
        [sys.executable, "-c", WITH_MEMO, "show", "last", "--workdir", str(workdir), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    record = json.loads(shown[shown.index("{") :])
    return wall, {f"{m['stage']}:{m['name']}": m["value"] for m in record["metrics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scheme", default="resample-lock")
    parser.add_argument("--attack", default="finetune")
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        off_s, off = run(WITHOUT_MEMO, Path(tmp) / "off", a.scheme, a.attack)
        on_s, on = run(WITH_MEMO, Path(tmp) / "on", a.scheme, a.attack)
    timed = {k for k in off if k.endswith(("_ms", "_s")) or "latency" in k}
    differ = [k for k in off if k not in timed and off[k] != on.get(k)]
    print(f"{a.scheme} smoke, attack {a.attack} (whole run: baseline, protection, evaluation)")
    print(f"  without the memo: {off_s:7.1f} s")
    print(f"  with the memo:    {on_s:7.1f} s")
    print(f"  metrics compared: {len(off) - len(timed)}, different: {len(differ)} {differ[:5]}")


if __name__ == "__main__":
    main()
