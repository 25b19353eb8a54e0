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
# and carried). $OUT receives at most 8 files: session.log, env.txt, bench.log, bench.md,
# bench_results.json, <config>_train.log, <config>_fold0.part0.pt, <config>_fold0.part1.pt.
# Back here, rebuild the checkpoint with
#   python -c "import torch,sys; a,b=(torch.load(p,weights_only=False) for p in sys.argv[1:3]);
#              a['model'].update(b['model']); torch.save(a,sys.argv[3])" part0.pt part1.pt fold0.pt
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

left() { echo $((BUDGET - SECONDS)); }
limited() {  # limited NAME LIMIT_S COMMAND...: COMMAND under min(LIMIT_S, what is left)
    local name=$1 limit=$2
    shift 2
    local rest
    rest=$(left)
    if ((rest < 30)); then
        echo "+++ [${SECONDS}s] SKIP $name: ${rest}s left"
        return 1
    fi
    ((limit > rest)) && limit=$rest
    echo "+++ [${SECONDS}s] $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    echo "+++ [${SECONDS}s] $name finished with exit status $rc"
    return $rc
}

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
saved = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
keys = list(saved["model"])
half = len(keys) // 2
for part, chosen in enumerate((keys[:half], keys[half:])):
    piece = {k: v for k, v in saved.items() if k != "model" and part == 0}
    piece["model"] = {k: saved["model"][k] for k in chosen}
    torch.save(piece, f"{sys.argv[2]}.part{part}.pt")
print(f"checkpoint split: {len(keys)} tensors in two files")
EOF
        fi
    fi
else
    echo "+++ no signal bank at $BANK: step 1 skipped"
fi

# ---- 2. throughput
rest=$(left)
if ((rest > 60)); then
    BENCH_PLAN=${BENCH_PLAN:-"Nspec16:optimized Seq03aug3:optimized Nspec16:optimized-fp16 \
Seq03aug3:optimized-cudagraphs Nspec16:optimized-conv-frontend Seq03aug3:optimized-compile"} \
    BENCH_BUDGET_S=$((rest - 45)) BENCH_DATA="$WORK/bench" OUT=$OUT bash scripts/device_bench.sh
fi

# ---- 3. the front-end profile
limited "profile Nspec16" 60 "$PY" scripts/profile_nspec16.py --steps 15
echo "+++ [${SECONDS}s] session done: $(ls "$OUT" | tr '\n' ' ')"
