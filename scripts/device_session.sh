#!/usr/bin/env bash
# One GPU session's checks in one call, in order of need, within SESSION_BUDGET_S seconds:
#
#   OUT=/folder/for/results bash scripts/device_session.sh        (from anywhere; runs in the repo root)
#
#  1. Issue 6: a whitened competition config (SESSION_CONFIG, default Seq03w) trained on one fold of
#     a data set made on the device from a carried signal bank (simulate.py --signal-bank; the GPU
#     machine has no PyCBC) with calibrated noise. Its fold checkpoint comes back in two halves
#     (the device returns files of at most 16 MiB); the command at the end of this header joins them.
#  2. Issue 7: scripts/device_bench.sh with BENCH_PLAN (default below) on the rest of the budget.
#  3. The Nspec16 front-end / precision profile (scripts/profile_nspec16.py), if time is left.
#
# Needs: the bank at SESSION_BANK (default .devcarry/signal_bank.npz, made here with
# `python simulate.py --write-signal-bank .devcarry/signal_bank.npz --n-signals 2000 --seed 7`,
# and carried). $OUT receives session.log (everything printed), env.txt, bench.md,
# bench_results.json, <config>_train.log and <config>_fold0.p<k>.pt, the checkpoint in parts of at
# most 12 MiB (2 for Seq03w, 3 for Nspec16w: 8 files at most, the device's limit). Back here:
#   python -c "import torch,sys; parts=[torch.load(p,weights_only=False) for p in sys.argv[2:]];
#              [parts[0]['model'].update(p['model']) for p in parts[1:]]; torch.save(parts[0],sys.argv[1])" \
#          fold0.pt Seq03w_fold0.p*.pt
# Environment: SESSION_BUDGET_S (default 540), SESSION_N_TRAIN (default 24000), SESSION_CONFIG,
# SESSION_BANK, BENCH_PLAN, PYTHON (default python3).
set -u -o pipefail
: "${OUT:?set OUT to the folder that receives the results}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
BUDGET=${SESSION_BUDGET_S:-540}
CONFIG=${SESSION_CONFIG:-Seq03w}
BANK=${SESSION_BANK:-.devcarry/signal_bank.npz}
N_TRAIN=${SESSION_N_TRAIN:-24000}
WORK=${SESSION_WORK:-/tmp/g2net_session}
rm -rf "$WORK"
mkdir -p "$WORK"
exec > >(tee -a "$OUT/session.log") 2>&1

source scripts/budget.sh

# ---- 1. the whitened config on bank-made data
if [[ -f "$BANK" ]]; then
    data="$WORK/input" results="$WORK/results"
    if limited "data set from the bank" 90 "$PY" simulate.py --out "$data" --n-train "$N_TRAIN" \
            --n-test 256 --seed 1234 --signal-bank "$BANK" --workers "$(nproc)" --no-progress &&
       limited "prep_data" 60 "$PY" prep_data.py --input "$data" --cache --no-progress; then
        G2NET_INPUT_DIR=$data G2NET_RESULTS_DIR=$results \
            limited "train $CONFIG fold 0" 240 "$PY" train.py --config "$CONFIG" --limit_fold 0 --silent
        run_dir="$results/$CONFIG"
        cp "$run_dir"/*.log "$OUT/${CONFIG}_train.log" 2>/dev/null
        if [[ -f "$run_dir/fold0.pt" ]]; then
            "$PY" - "$run_dir/fold0.pt" "$OUT/${CONFIG}_fold0" <<'EOF'
import sys
import torch
# files come back only up to 16 MiB each: the weights travel in parts of at most 12 MiB
saved = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
parts, size = [{}], 0
for key, tensor in saved["model"].items():
    nbytes = tensor.numel() * tensor.element_size()
    if parts[-1] and size + nbytes > 12 * 2 ** 20:
        parts.append({})
        size = 0
    parts[-1][key] = tensor
    size += nbytes
for number, weights in enumerate(parts):
    piece = {k: v for k, v in saved.items() if k != "model"} if number == 0 else {}
    piece["model"] = weights
    torch.save(piece, f"{sys.argv[2]}.p{number}.pt")
print(f"checkpoint in {len(parts)} parts of at most 12 MiB")
EOF
        fi
    fi
else
    echo "+++ no signal bank at $BANK: step 1 skipped"
fi

# ---- 2. throughput
rest=$((BUDGET - SECONDS))
if ((rest > 60)); then
    BENCH_PLAN=${BENCH_PLAN:-"Nspec16:optimized Seq03aug3:optimized Nspec16:optimized-fp16 \
Seq03aug3:optimized-cudagraphs Nspec16:optimized-conv-frontend Seq03aug3:optimized-compile"} \
    BENCH_BUDGET_S=$((rest - 45)) BENCH_DATA="$WORK/bench" OUT="$WORK/bench_out" bash scripts/device_bench.sh
    cp "$WORK"/bench_out/{bench.md,bench_results.json,env.txt} "$OUT"/ 2>/dev/null
fi

# ---- 3. the front-end profile
limited "profile Nspec16" 60 "$PY" scripts/profile_nspec16.py --steps 15
echo "+++ [${SECONDS}s] session done: $(ls "$OUT" | tr '\n' ' ')"
