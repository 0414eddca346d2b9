#!/usr/bin/env bash
# The GPU demo end to end, as run for figures/gpu-h200/: `freqlab demo --device cuda` (a 35.7 M-parameter model), then
# benchmarks/pretrain_quality.py on every checkpoint it trained, then the small files packed into one archive.
#
#   bash benchmarks/gpu_demo.sh OUT_DIR [extra freqlab demo options, e.g. --quick --device cpu for a dry run]
#
# Environment: DEMO_TIMEOUT (seconds; the demo is stopped then and what it wrote is still packed), DEMO_SETTINGS
# (JSON of freqlab.demo.DemoSettings fields, a study's config as a dict of fields: run those sizes instead of the GPU default; figures/gpu-h200/ passed the
# default's values this way), RUN_DIR (where the run goes, default /tmp/freqlab-gpu-demo), PYTHON.
# Writes into OUT_DIR: demo.log (the demo's stage lines and summaries), quality.log and quality.json (held-out
# MSE / Wiener per σ and the σ_max band power, per checkpoint), device.txt (GPU, torch), report.md and gpu-demo.tgz
# (every small file of the run: figures, results/, report, run.json, loss_by_sigma.csv; no weights).
# Needs freqlab importable (pip install -e . or PYTHONPATH=.).
set -u
out=${1:?usage: gpu_demo.sh OUT_DIR [demo options]}
shift
run=${RUN_DIR:-/tmp/freqlab-gpu-demo}
py=${PYTHON:-python3}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
{ nvidia-smi -L 2>/dev/null; "$py" -c "import torch; print('torch', torch.__version__)"; nproc; } >"$out/device.txt" 2>&1
device=cuda prev=""
for a in "$@"; do [ "$prev" = "--device" ] 2>/dev/null && device=$a; prev=$a; done
start=$(date +%s)
if [ -n "${DEMO_SETTINGS:-}" ]; then  # JSON of freqlab.demo.DemoSettings fields, e.g. a shorter run
    timeout "${DEMO_TIMEOUT:-1000000}" "$py" -c "import json, sys
from freqlab.demo import DemoSettings, run_demo
import shutil
from freqlab.plots.results_dir import export_results
out = sys.argv[1]
run_demo(out, device=sys.argv[2], settings=DemoSettings.from_dict(json.loads(sys.argv[3])), progress=False)
shutil.copytree(out + '/figures', out + '/figures-gpu', dirs_exist_ok=True)
export_results(out, out + '/figures-gpu/results')" "$run" "$device" "$DEMO_SETTINGS" \
        >"$out/demo.log" 2>&1
else
    timeout "${DEMO_TIMEOUT:-1000000}" "$py" -m freqlab demo --device cuda --quiet --out "$run" \
        --figures "$run/figures-gpu" "$@" >"$out/demo.log" 2>&1
fi
rc=$?
echo "demo exit $rc after $(( $(date +%s) - start )) s" | tee -a "$out/demo.log"
"$py" benchmarks/pretrain_quality.py --out "$run/pretrain" --no-train --all-checkpoints --device "$device" \
    --json "$out/quality.json" >"$out/quality.log" 2>&1
echo "quality exit $? after $(( $(date +%s) - start )) s" | tee -a "$out/demo.log"
cp "$run/report.md" "$out/" 2>/dev/null
# every small file there is, also from a run stopped by its time limit
(cd "$run" && find . -name '*.nc' -o -name '*.png' -o -name '*.pdf' -o -name '*.md' -o -name '*.csv' \
    -o -name '*.json' -not -path '*/state/*' | tar czf "$out/gpu-demo.tgz" -T -) 2>>"$out/demo.log"
exit $rc
