#!/usr/bin/env bash
# The GPU-host measurements issue 8 still lacks, as one short script for a device machine
# (one GPU, 16 CPU cores; torch with CUDA, no snakemake needed). About 5 minutes on an H100 for
# steps 1-3; step 4 (new, not yet run on such a host) is estimated at 3 more.
#
#   bash benchmarks/device_check.sh [OUT_DIR]     # JSON rows and the log go to OUT_DIR
#   DEVICE=cpu QUICK=1 bash benchmarks/device_check.sh /tmp/x   # rehearsal: tiny sizes, no GPU
#
# 1. CUDA tests of the fit engine and of batched fits
# 2. Ours-64 at 512², 3000 iterations, one fit (target on one H100: <= 30 s)
# 3. fits per hour for K processes, one fit each, and for K processes of 8 batched fits each
#    (fit.fits_per_gpu x fit.batch in the pipeline), against one fit at a time
# 4. the CPU process layout on all N CPU cores, Ours-32 and Ours-64 at 256²: N fits x 1 thread,
#    N/4 x 4 and 1 x N (on 16 cores: 16x1, 4x4, 1x16); sets the default of config fit.cpu_threads
#    (docs/running.md, Many-core CPU hosts)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.bench}}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
bench="python benchmarks/fit_speed.py"
dev="${DEVICE:-cuda}"
quick=()   # QUICK=1: a few iterations on tiny images, to check the script itself
[ -n "${QUICK:-}" ] && quick=(--iterations 3 --warmup 1)
small() { if [ -n "${QUICK:-}" ]; then echo 32; else echo "$1"; fi; }
step() { echo; echo "=== $1"; }
{
  step "device"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  step "CUDA tests"
  timeout 300 python -m pytest -q -x -p no:cacheprovider tests/test_fit_batched.py tests/test_fit.py -k cuda \
    || echo "CUDA tests failed or pytest is missing"
  step "one Ours-64 fit at 512², 3000 iterations"
  timeout 300 $bench full --device "$dev" --methods ours64 --size "$(small 512)" --json "$out/full.json"
  for m in ours32 ours64; do
    step "$m at 256²: K fit processes"
    timeout 300 $bench throughput --device "$dev" --method $m --size "$(small 256)" --layouts 1x1 2x1 4x1 \
      "${quick[@]}" --json "$out/throughput_$m.json"
    step "$m at 256²: K processes of 8 batched fits"
    timeout 300 $bench throughput --device "$dev" --method $m --size "$(small 256)" --batch 8 \
      --layouts 1x1 2x1 4x1 "${quick[@]}" --json "$out/throughput_batch8_$m.json"
  done
  n=$(nproc)
  layouts=("${n}x1")
  [ "$n" -ge 8 ] && [ $((n % 4)) -eq 0 ] && layouts+=("$((n / 4))x4")
  layouts+=("1x$n")
  for m in ours32 ours64; do
    step "CPU process layout, $m at 256², $n cores: ${layouts[*]}"
    timeout 300 $bench throughput --device cpu --method $m --size "$(small 256)" --iterations 20 \
      --layouts "${layouts[@]}" "${quick[@]}" --json "$out/throughput_cpu_$m.json"
  done
} 2>&1 | tee "$out/device_check.log"
