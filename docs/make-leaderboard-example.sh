#!/usr/bin/env bash
# Regenerates docs/leaderboard-example/ (the example site) and docs/leaderboard-screenshot.png
# from real smoke runs: four schemes, two seeds, two attacks on the built-in synthetic set
# (about 5 minutes on 2 CPU cores). Needs Chromium (Debian: apt-get install chromium) and the
# dev extras (playwright) for the screenshot. Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
export IPBENCH_OFFLINE=1 IPBENCH_PROGRESS=0
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
for scheme in mlock adip passport chaow; do
    for seed in 0 1; do
        ipbench run --scheme "$scheme" --preset smoke --dataset synthetic --device cpu \
            --seed "$seed" --attacks prune,fake-token --workdir "$runs" >/dev/null
    done
done
rm -rf docs/leaderboard-example
ipbench leaderboard --workdir "$runs" --out docs/leaderboard-example
python - <<'PY'
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

page_file = Path("docs/leaderboard-example/synthetic-smoke.html").resolve()
with sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(page_file.as_uri())
    page.screenshot(path="docs/leaderboard-screenshot.png", full_page=True)
    browser.close()
PY
echo "wrote docs/leaderboard-example/ and docs/leaderboard-screenshot.png"
