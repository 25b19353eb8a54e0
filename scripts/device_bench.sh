#!/usr/bin/env bash
# Issue 7's figures in one run on one GPU: the original-like pipeline against the optimized one.
#
#   OUT=/folder/for/results bash scripts/device_bench.sh        (from anywhere; runs in the repo root)
#
# For each config of BENCH_CONFIGS (default "Nspec16 Seq03aug3") it runs bench.py on a noise-only
# set of 5,120 training + 1,280 validation examples in the competition layout (written first, with
# its cache), batch 64, in two settings:
#   original   per-file .npy reads, Normalize/BandPass with scipy in the main process, fp16,
#              no channels_last
#   optimized  memory-mapped cache, DataLoader workers from the CPU count (pinned, persistent),
#              Normalize/BandPass/Whiten batched on the GPU, bf16, channels_last
# and, while time is left, the optimized setting with the preprocessing kept on the CPU workers, with
# torch.compile and with torch.compile's CUDA graphs (mode reduce-overhead). Each measurement is its own process with its own time limit, so a failure or
# a hang loses only that one. Everything lands in $OUT (4 files): bench_results.json (all runs),
# bench.md (the table), env.txt (versions, GPU), bench.log (this output).
#
# Needs python3 with torch, timm, numpy, scipy, pandas, scikit-learn and tqdm; nnAudio on PYTHONPATH
# for CQT front-ends; no pycbc (the noise comes from noise_model.colored_noise). Environment:
#   BENCH_CONFIGS   configs to measure (names in configs.py)
#   BENCH_PLAN      instead of the sequence above, these runs in this order, each CONFIG:TAG with TAG
#                   one of original, optimized, optimized-fp16, optimized-conv-frontend (wavelet
#                   front-end by direct convolution), optimized-cpu-transforms, optimized-compile,
#                   optimized-cudagraphs (Inductor + CUDA graphs), optimized-cudagraphs-backend
#                   (CUDA graphs without Inductor), optimized-eager (compile off);
#                   e.g. BENCH_PLAN="Nspec16:optimized Seq03aug3:optimized"
#   BENCH_BUDGET_S  seconds for the whole script (default 390); optional steps are skipped past it
#   BENCH_DATA      scratch folder for the noise set and per-run JSON (default /tmp/g2net_bench)
#   BENCH_TINY=1    CPU check of this script: Debug, 64 + 32 examples, batch 16
#   PYTHON          interpreter (default python3)
set -u -o pipefail
: "${OUT:?set OUT to the folder that receives the results}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DATA=${BENCH_DATA:-/tmp/g2net_bench}
if [[ "${BENCH_TINY:-0}" == 1 ]]; then
    CONFIGS=${BENCH_CONFIGS:-Debug}; N_TRAIN=64; N_VALID=32; BATCH=16
    BUDGET=${BENCH_BUDGET_S:-900}; LIMIT=240
else
    CONFIGS=${BENCH_CONFIGS:-"Nspec16 Seq03aug3"}; N_TRAIN=5120; N_VALID=1280; BATCH=64
    BUDGET=${BENCH_BUDGET_S:-390}; LIMIT=150
fi
RUNS="$DATA/runs"
rm -rf "$RUNS"
mkdir -p "$RUNS"
exec > >(tee -a "$OUT/bench.log") 2>&1

source scripts/budget.sh

common=(--synthetic --data-dir "$DATA/noise" --n-train "$N_TRAIN" --n-valid "$N_VALID"
        --batch-size "$BATCH")
bench() {  # bench CONFIG TAG LIMIT_S BENCH_ARGS...
    local config=$1 tag=$2 limit=$3
    shift 3
    limited "$config $tag" "$limit" "$PY" bench.py --config "$config" "${common[@]}" \
        --label "$tag" --json "$RUNS/bench_${config}_${tag}.json" "$@"
}

ENV_PY=$(cat <<'EOF'
import importlib, platform
print('python', platform.python_version())
for name in ('torch', 'timm', 'numpy', 'scipy', 'pandas', 'sklearn', 'tqdm', 'nnAudio'):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, '__version__', '?'))
    except Exception as exc:
        print(name, 'MISSING:', type(exc).__name__, exc)
import torch
print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')
EOF
)
echo "+++ [${SECONDS}s] environment"
{ date -u; timeout 30 nvidia-smi; echo "cpus: $(nproc --all)"; free -g; timeout 60 "$PY" -c "$ENV_PY"; } >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

limited "noise data set" 120 "$PY" bench.py --prepare-only "${common[@]}"

# run CONFIG TAG: one measurement; TAG names the setting and its overrides.
run() {
    local config=$1 tag=$2
    case $tag in
        original) bench "$config" "$tag" "$LIMIT" --setting original ;;
        optimized) bench "$config" "$tag" "$LIMIT" --setting optimized ;;
        optimized-fp16) bench "$config" "$tag" "$LIMIT" --setting optimized --amp fp16 ;;
        optimized-conv-frontend) bench "$config" "$tag" "$LIMIT" --setting optimized --frontend-method conv ;;
        optimized-cpu-transforms) bench "$config" "$tag" "$LIMIT" --setting optimized --gpu-transform off ;;
        optimized-compile) bench "$config" "$tag" "$LIMIT" --setting optimized --compile on --phases model,train ;;
        optimized-cudagraphs) bench "$config" "$tag" "$LIMIT" --setting optimized --compile reduce-overhead \
            --phases model,train ;;
        optimized-cudagraphs-backend) bench "$config" "$tag" "$LIMIT" --setting optimized \
            --compile cudagraphs --phases model,train ;;
        optimized-eager) bench "$config" "$tag" "$LIMIT" --setting optimized --compile off ;;
        *) echo "+++ unknown run $config:$tag (see BENCH_PLAN in the header)"; return 0 ;;
    esac
}

if [[ -n "${BENCH_PLAN:-}" ]]; then
    for item in $BENCH_PLAN; do
        run "${item%%:*}" "${item#*:}"
    done
else
    for config in $CONFIGS; do
        run "$config" original
        run "$config" optimized
    done
    # Optional, in order of interest, while the budget lasts.
    for config in $CONFIGS; do
        run "$config" optimized-cpu-transforms
    done
    first=${CONFIGS%% *}
    run "$first" optimized-compile
    run "$first" optimized-cudagraphs
fi

mapfile -t results < <(ls -tr "$RUNS"/bench_*.json 2>/dev/null)
# the summary takes seconds and is what comes back: it runs whatever budget is left
echo "+++ [${SECONDS}s] summary"
timeout 60 "$PY" bench.py --summarize "${results[@]:-no-results.json}" \
    --markdown "$OUT/bench.md" --json "$OUT/bench_results.json"
echo "+++ [${SECONDS}s] done: $(ls "$OUT" | tr "\n" " ")"
