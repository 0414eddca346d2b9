#!/usr/bin/env bash
# The GPU demo end to end, as run for figures/gpu-h200/: `freqlab demo --device cuda` (cifar-size model), then
# benchmarks/pretrain_quality.py on every checkpoint it trained, then the small files packed into one archive.
#
#   bash benchmarks/gpu_demo.sh OUT_DIR [extra freqlab demo options, e.g. --quick --device cpu for a dry run]
#
# Writes into OUT_DIR: demo.log (the demo's stage lines and summaries), quality.log and quality.json (held-out
# MSE / Wiener per σ and the σ_max band power, per checkpoint), device.txt (GPU, torch), gpu-demo.tgz (figures,
# their results/ files, report.md, the pre-training run.json and loss_by_sigma.csv). The run itself goes to
# RUN_DIR (default /tmp/freqlab-gpu-demo). Needs freqlab importable (pip install -e . or PYTHONPATH=.).
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
timeout "${DEMO_TIMEOUT:-1000000}" "$py" -m freqlab demo --device cuda --quiet --out "$run" --figures "$run/figures-gpu" "$@" >"$out/demo.log" 2>&1
rc=$?
echo "demo exit $rc after $(( $(date +%s) - start )) s" | tee -a "$out/demo.log"
"$py" benchmarks/pretrain_quality.py --out "$run/pretrain" --no-train --all-checkpoints --device "$device" \
    --json "$out/quality.json" >"$out/quality.log" 2>&1
echo "quality exit $? after $(( $(date +%s) - start )) s" | tee -a "$out/demo.log"
cp "$run/report.md" "$out/" 2>/dev/null
tar czf "$out/gpu-demo.tgz" -C "$run" --ignore-failed-read figures-gpu report.md pretrain/run.json \
    pretrain/loss_by_sigma.csv 2>>"$out/demo.log"
exit $rc
