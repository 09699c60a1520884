#!/usr/bin/env bash
# The GPU-host calls of the paper-scale work (docs/reproduction.md), each one command writing
# everything under OUT. The host has Python 3.12 with torch and the scientific stack but no
# snakemake and no network: `python benchmarks/wheelhouse.py prepare` (here) puts the wheels it
# lacks in .whl/ and the datasets in .mirror/, both git-ignored; the call carries them.
#
#   bash benchmarks/paper_scale.sh speed    # call 1 (<= 4 min): CUDA tests, CUDA-graph speed rows
#   bash benchmarks/paper_scale.sh table2   # call 2 (<= 10 min): Table 2's Ours column, published
#
# Rehearsal without a GPU, on tiny settings (after `python benchmarks/wheelhouse.py check`):
#   DEVICE=cpu QUICK=1 PYTHON=/tmp/dipkit-hostlike/venv/bin/python WHEELS=/tmp/dipkit-hostlike/whl \
#     OUT=/tmp/rehearsal bash benchmarks/paper_scale.sh speed      (and ... table2)
#
# Knobs: OUT (default .bench), PYTHON (default /opt/torch/.venv/bin/python3, else python3), WHEELS
# (.whl), DATA (.mirror), DEVICE (cuda), QUICK, BUDGET (seconds the call may take: 570), WORK (the
# pipeline's working folder for table2: /tmp/dipkit-table2).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out="${OUT:-$repo/.bench}"
mkdir -p "$out"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x /opt/torch/.venv/bin/python3 ]; then py=/opt/torch/.venv/bin/python3; else py=python3; fi
fi
wheels="${WHEELS:-$repo/.whl}"
data="${DATA:-$repo/.mirror}"
dev="${DEVICE:-cuda}"
budget="${BUDGET:-570}"
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }
step() { echo; echo "=== $1 ($((SECONDS - start)) s)"; }

setup() {
  step "setup"
  export PYTHONPATH="$repo"
  if ! "$py" -c "import snakemake" 2>/dev/null; then
    site="${SITE:-/tmp/dipkit-site}"
    "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl || exit 1
    export PYTHONPATH="$repo:$site"
  fi
  "$py" -c "import sys, torch, snakemake; print('python', sys.version.split()[0], 'torch', torch.__version__, \
'cuda', torch.cuda.is_available(), 'snakemake', snakemake.__version__)" || exit 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  echo "cpus: $(nproc); date: $(date -u +%F)"
}

speed() {
  setup
  local bench=("$py" benchmarks/fit_speed.py) quick=() perfit=() full=() sizes=(256 512) small=256 big=512
  local batches=(4 8) scale=1
  if [ -n "${QUICK:-}" ]; then  # tiny sizes; a shared 2-core CPU needs longer time limits
    quick=(--iterations 3 --warmup 1)
    perfit=(--ref-iterations 1 --rounds 1)
    full=(--iterations 5 --warmup 1)
    sizes=(32) small=32 big=32 batches=(2) scale=5
  fi
  step "CUDA tests (graph and eager fits, batched fits, the engine on CUDA)"
  timeout $((150 * scale)) "$py" -m pytest -q -p no:cacheprovider tests/test_fit_cuda_graphs.py tests/test_fit_batched.py \
    tests/test_fit.py tests/test_fit_reference.py -k "cuda or graph or hook" 2>&1 | tail -25
  step "per fit: Ours-32, eager steps against the captured step"
  timeout $((100 * scale)) "${bench[@]}" per-fit --cuda-graphs --device "$dev" --methods ours32 --sizes "${sizes[@]}" \
    "${quick[@]}" "${perfit[@]}" --json "$out/per_fit_graphs.json"
  step "one Ours-64 fit at ${big}², 3000 iterations, eager and captured"
  timeout $((100 * scale)) "${bench[@]}" full --cuda-graphs --device "$dev" --methods ours64 --size "$big" "${full[@]}" \
    --json "$out/full_graphs.json"
  for m in ours32 ours64; do
    step "$m at ${small}²: batched fits with CUDA graphs against one eager fit"
    timeout $((60 * scale)) "${bench[@]}" batched --cuda-graphs --device "$dev" --method "$m" --size "$small" \
      --batches "${batches[@]}" "${quick[@]}" --json "$out/batched_graphs_$m.json"
  done
  step "done"
}

table2() {
  setup
  local work="${WORK:-/tmp/dipkit-table2}" cores
  cores=$(nproc)
  mkdir -p "$work"
  # the reproduction config with this host's dataset folder and device (QUICK: a few images,
  # 3 iterations), and the same without CBSD68 for the first stage
  "$py" - "$repo/configs/paper_table2_ours.yaml" "$work" "$data" "$dev" "${QUICK:-}" <<'EOF' || exit 1
import sys, yaml
src, work, data, dev, quick = sys.argv[1:]
cfg = yaml.safe_load(open(src))
cfg["mirror_dir"] = data
cfg["fit"]["device"] = dev
if quick:
    cfg["datasets"] = {"Set9": {"images": ["image_House256rgb"], "gaussian": [25, 50]},
                       "Set12": {"images": ["01", "02"], "gaussian": [25, 50]},
                       "CBSD68": {"images": ["101085"], "gaussian": [25, 50]}}
    cfg["fit"]["iterations"] = 3
yaml.safe_dump(cfg, open(f"{work}/all.yaml", "w"), sort_keys=False)
cfg["datasets"].pop("CBSD68")
yaml.safe_dump(cfg, open(f"{work}/first.yaml", "w"), sort_keys=False)
EOF
  local smk=("$py" -m snakemake -s "$repo/Snakefile" -d "$work" --cores "$cores" --scheduler greedy --quiet rules)
  step "Set9 and Set12, sigma 25 and 50 (42 fits)"
  local t0=$SECONDS
  timeout -k 20 $(($(left) - 100)) "${smk[@]}" --configfile "$work/first.yaml"
  local rc_first=$? took=$((SECONDS - t0))
  echo "first stage: exit $rc_first after $took s"
  # CBSD68 has 136 fits of 480x320, smaller than most of the 42 above: project from this stage
  local need=$((took * 136 / 42)) fits="$work/results/fits.parquet" config="$work/first.yaml"
  if [ "$rc_first" -eq 0 ] && [ "$need" -lt $(($(left) - 90)) ]; then
    step "CBSD68, sigma 25 and 50 (136 fits; projected $need s, $(left) s left)"
    timeout -k 20 $(($(left) - 60)) "${smk[@]}" --configfile "$work/all.yaml"
    local rc_all=$?
    echo "second stage: exit $rc_all"
    config="$work/all.yaml"
    [ "$rc_all" -eq 0 ] || fits="$work/results/fits"  # cut short: every fit that finished
  else
    echo "CBSD68 not run: projected $need s, $(left) s left (first stage exit $rc_first)"
    [ "$rc_first" -eq 0 ] || fits="$work/results/fits"
  fi
  step "publish"
  "$py" benchmarks/publish_table2.py --config "$config" --fits "$fits" --out "$out/reproduced" \
    --command "bash benchmarks/paper_scale.sh table2 (configs/paper_table2_ours.yaml)"
  step "pack"
  # rows, tables, figures and logs in one archive; the trajectories (about 534,000 rows at full
  # size) beside it, or, for a run cut short, each finished fit's own trajectory in the archive
  (cd "$work" && {
    find results -maxdepth 1 -name '*.parquet' ! -name trajectories.parquet
    find results/fits -name '*.parquet' ! -name '*.trajectory.parquet'
    [ -f results/trajectories.parquet ] || find results/fits -name '*.trajectory.parquet'
    find results/tables results/logs results/figures -type f
  } 2>/dev/null | tar czf "$out/table2_run.tar.gz" -T -)
  [ -f "$work/results/trajectories.parquet" ] && cp "$work/results/trajectories.parquet" "$out/"
  ls -la "$out" "$out/reproduced"
  step "done"
}

case "${1:-}" in
  speed) speed 2>&1 | tee "$out/speed.log" ;;
  table2) table2 2>&1 | tee "$out/table2.log" ;;
  *) echo "usage: bash benchmarks/paper_scale.sh speed|table2" >&2; exit 2 ;;
esac
