#!/usr/bin/env bash
# A GPU machine's checks in one call, in order of need, within SESSION_BUDGET_S seconds:
#
#   OUT=/folder/for/results bash scripts/gpu_session.sh        (from anywhere; runs in the repo root)
#
#  1. A whitened competition config (SESSION_CONFIG, default Seq03w) trained on fold 0 of a data set
#     made on the machine from a signal bank (simulate.py --signal-bank: the GPU machine needs no
#     PyCBC) with calibrated noise; its fold checkpoint is copied to $OUT.
#  2. The throughput comparison, scripts/gpu_throughput.sh with BENCH_PLAN (default below), on the
#     rest of the budget.
#  3. The Nspec16 front-end / precision profile (scripts/profile_nspec16.py), if time is left.
#
# Needs the bank at SESSION_BANK, made on a machine with PyCBC, e.g.
#   python simulate.py --write-signal-bank signal_bank.npz --n-signals 2000 --seed 7
# (without it step 1 is skipped). $OUT receives session.log (everything printed), env.txt, bench.md,
# bench_results.json, <config>_train.log and <config>_fold0.pt. Where results come back through a
# channel that limits the size of a file, SESSION_PART_MIB=N writes the checkpoint instead as
# <config>_fold0.p<k>.pt, parts of at most N MiB of weights (2 for Seq03w at 12 MiB, 3 for
# Nspec16w), joined again by
#   python -c "import torch,sys; parts=[torch.load(p,weights_only=False) for p in sys.argv[2:]];
#              [parts[0]['model'].update(p['model']) for p in parts[1:]]; torch.save(parts[0],sys.argv[1])" \
#          fold0.pt Seq03w_fold0.p*.pt
# Environment:
#   SESSION_BUDGET_S        seconds for the whole script (default 1800: every step); later steps
#                           are cut short or skipped past it
#   SESSION_TRAIN_LIMIT_S   seconds for step 1's training (default 240)
#   SESSION_CONFIG          the config of step 1 (default Seq03w)
#   SESSION_BANK            the signal bank (default signal_bank.npz in the repo root)
#   SESSION_N_TRAIN         training examples made from the bank (default 24000)
#   SESSION_PART_MIB        split the checkpoint into parts of at most this many MiB (default 0: whole)
#   SESSION_WORK            scratch folder (default /tmp/g2net_session)
#   BENCH_PLAN              the runs of step 2 (see scripts/gpu_throughput.sh)
#   PYTHON                  interpreter (default python3)
set -u -o pipefail
source "$(dirname "$0")/gpu_common.sh" session.log

BUDGET=${SESSION_BUDGET_S:-1800}
TRAIN_LIMIT=${SESSION_TRAIN_LIMIT_S:-240}
CONFIG=${SESSION_CONFIG:-Seq03w}
BANK=${SESSION_BANK:-signal_bank.npz}
N_TRAIN=${SESSION_N_TRAIN:-24000}
PART_MIB=${SESSION_PART_MIB:-0}
WORK=${SESSION_WORK:-/tmp/g2net_session}
fresh_dir "$WORK"
write_env "$OUT/env.txt"

# ---- 1. the whitened config on bank-made data
if [[ -f "$BANK" ]]; then
    data="$WORK/input" results="$WORK/results"
    if limited "data set from the bank" 90 "$PY" simulate.py --out "$data" --n-train "$N_TRAIN" \
            --n-test 256 --seed 1234 --signal-bank "$BANK" --workers "$(nproc)" --no-progress &&
       limited "prep_data" 60 "$PY" prep_data.py --input "$data" --cache --no-progress; then
        G2NET_INPUT_DIR=$data G2NET_RESULTS_DIR=$results \
            limited "train $CONFIG fold 0" "$TRAIN_LIMIT" "$PY" train.py --config "$CONFIG" \
                --limit_fold 0 --silent
        run_dir="$results/$CONFIG"
        cp "$run_dir"/*.log "$OUT/${CONFIG}_train.log" 2>/dev/null
        if [[ -f "$run_dir/fold0.pt" ]] && ((PART_MIB <= 0)); then
            cp "$run_dir/fold0.pt" "$OUT/${CONFIG}_fold0.pt"
        elif [[ -f "$run_dir/fold0.pt" ]]; then
            "$PY" - "$run_dir/fold0.pt" "$OUT/${CONFIG}_fold0" "$PART_MIB" <<'EOF'
import sys
import torch
# the weights travel in parts of at most PART_MIB MiB, for channels that limit a file's size
saved = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
limit = float(sys.argv[3]) * 2 ** 20
parts, size = [{}], 0
for key, tensor in saved["model"].items():
    nbytes = tensor.numel() * tensor.element_size()
    if parts[-1] and size + nbytes > limit:
        parts.append({})
        size = 0
    parts[-1][key] = tensor
    size += nbytes
for number, weights in enumerate(parts):
    piece = {k: v for k, v in saved.items() if k != "model"} if number == 0 else {}
    piece["model"] = weights
    torch.save(piece, f"{sys.argv[2]}.p{number}.pt")
print(f"checkpoint in {len(parts)} parts of at most {sys.argv[3]} MiB")
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
    BENCH_BUDGET_S=$((rest - 45)) BENCH_DATA="$WORK/bench" OUT="$WORK/bench_out" bash scripts/gpu_throughput.sh
    cp "$WORK"/bench_out/{bench.md,bench_results.json} "$OUT"/ 2>/dev/null
fi

# ---- 3. the front-end profile
limited "profile Nspec16" 60 "$PY" scripts/profile_nspec16.py --steps 15
echo "+++ [${SECONDS}s] session done: $(ls "$OUT" | tr '\n' ' ')"
