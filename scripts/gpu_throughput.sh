#!/usr/bin/env bash
# Training throughput on one GPU: bench.py's original-like pipeline against the optimized one.
#
#   OUT=/folder/for/results bash scripts/gpu_throughput.sh     (from anywhere; runs in the repo root)
#
# For each config of BENCH_CONFIGS (default "Nspec16 Seq03aug3") it runs bench.py on a noise-only
# set of 5,120 training + 1,280 validation examples in the competition layout (written first, with
# its cache), batch 64, in two settings:
#   original   per-file .npy reads, Normalize/BandPass with scipy in the main process, fp16,
#              no channels_last
#   optimized  memory-mapped cache, DataLoader workers from the CPU count (pinned, persistent),
#              Normalize/BandPass/Whiten batched on the GPU, bf16, channels_last
# and, while time is left, the optimized setting with the preprocessing kept on the CPU workers, with
# torch.compile and with torch.compile's CUDA graphs (mode reduce-overhead). Each measurement is its
# own process with its own time limit, so a failure or a hang loses only that one. Everything lands
# in $OUT (4 files): bench_results.json (all runs), bench.md (the table), env.txt (versions, GPU),
# bench.log (this output).
#
# Needs python3 with torch, timm, numpy, scipy, pandas, scikit-learn and tqdm; nnAudio on PYTHONPATH
# for CQT front-ends; no pycbc (the noise comes from noise_model.colored_noise). Environment:
#   BENCH_CONFIGS      configs to measure (names in configs.py)
#   BENCH_PLAN         instead of the sequence above, these runs in this order, each CONFIG:TAG with
#                      TAG one of original, optimized, optimized-fp16, optimized-conv-frontend (wavelet
#                      front-end by direct convolution), optimized-cpu-transforms, optimized-compile,
#                      optimized-cudagraphs (Inductor + CUDA graphs), optimized-cudagraphs-backend
#                      (CUDA graphs without Inductor), optimized-eager (compile off);
#                      e.g. BENCH_PLAN="Nspec16:optimized Seq03aug3:optimized"
#   BENCH_BUDGET_S     seconds for the whole script (default 1800: every run of the default sequence);
#                      the runs that no longer fit are skipped, and the summary is always written
#   BENCH_RUN_LIMIT_S  seconds for one measurement (default 150)
#   BENCH_DATA         scratch folder for the noise set and per-run JSON (default /tmp/g2net_bench)
#   BENCH_TINY=1       CPU check of this script: Debug, 64 + 32 examples, batch 16, 240 s a run
#   PYTHON             interpreter (default python3)
set -u -o pipefail
source "$(dirname "$0")/gpu_common.sh" bench.log

DATA=${BENCH_DATA:-/tmp/g2net_bench}
if [[ "${BENCH_TINY:-0}" == 1 ]]; then
    CONFIGS=${BENCH_CONFIGS:-Debug}; N_TRAIN=64; N_VALID=32; BATCH=16
    BUDGET=${BENCH_BUDGET_S:-900}; LIMIT=${BENCH_RUN_LIMIT_S:-240}
else
    CONFIGS=${BENCH_CONFIGS:-"Nspec16 Seq03aug3"}; N_TRAIN=5120; N_VALID=1280; BATCH=64
    BUDGET=${BENCH_BUDGET_S:-1800}; LIMIT=${BENCH_RUN_LIMIT_S:-150}
fi
RUNS="$DATA/runs"
fresh_dir "$RUNS"

common=(--synthetic --data-dir "$DATA/noise" --n-train "$N_TRAIN" --n-valid "$N_VALID"
        --batch-size "$BATCH")
bench() {  # bench CONFIG TAG LIMIT_S BENCH_ARGS...
    local config=$1 tag=$2 limit=$3
    shift 3
    limited "$config $tag" "$limit" "$PY" bench.py --config "$config" "${common[@]}" \
        --label "$tag" --json "$RUNS/bench_${config}_${tag}.json" "$@"
}

write_env "$OUT/env.txt"

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
# the summary takes seconds and is the result: it runs even when the budget is spent
echo "+++ [${SECONDS}s] summary"
timeout 60 "$PY" bench.py --summarize "${results[@]:-no-results.json}" \
    --markdown "$OUT/bench.md" --json "$OUT/bench_results.json"
echo "+++ [${SECONDS}s] done: $(ls "$OUT" | tr "\n" " ")"
