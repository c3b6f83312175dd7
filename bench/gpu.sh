#!/usr/bin/env bash
# docs/performance.md's GPU figures (issues 10, 34): vit_b_16 and dinov2_vits14, the default preset at batch 1
# to 64, fp32, bf16 and bf16 with compiled blocks, plus where the time goes (top kernels).
# Runs with the machine's own python3 and torch. Random weights: a GPU machine here has no
# network, and a step's work does not depend on the weights' values.
#     OUT=/tmp/gpu bash bench/gpu.sh
set -u
out=${OUT:-bench-gpu}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
} 2>&1 | tee "$out/machine.txt"
figures() {  # model, seconds allowed
  timeout "$2" python3 bench/speed.py --model "$1:random" --presets robust \
    --batches ${BATCHES:-64 32 8 1} --variants bf16 bf16+compile fp32 --warmup 4 \
    --steps "${STEPS:-12}" --rounds 2 \
    --budget-s $(( $2 * 3 / 4 )) --no-contenders --profile --json "$out/${1}.json" \
    > "$out/${1}.log" 2>&1
  echo "$1: exit $?"
  grep -v -e Warning -e warn "$out/${1}.log" | grep -B2 -A12 "^preset" | head -30
}
figures vit_b_16 "${VIT_SECONDS:-270}"
figures dinov2_vits14 "${DINO_SECONDS:-200}"
# Atlas units per hour and index images per second on the GPU (issues 11 and 12).
timeout "${THROUGHPUT_SECONDS:-150}" python3 bench/throughput.py --model vit_b_16:random \
  --units 64 --images 2048 --json "$out/throughput.json" > "$out/throughput.log" 2>&1
echo "throughput: exit $?"; grep -e "^atlas" -e "^index" "$out/throughput.log"
# The atlas end to end against the loop alone on the same units (issue 34): the ratio, and
# where the rest goes.
timeout "${OVERHEAD_SECONDS:-240}" python3 bench/atlas_overhead.py --model vit_b_16:random \
  --units 256 --batch-units 64 --json "$out/atlas_overhead.json" > "$out/atlas_overhead.log" 2>&1
echo "atlas overhead: exit $?"; grep -v -e Warning -e warn "$out/atlas_overhead.log" | tail -12
