#!/usr/bin/env bash
# The continuous-strain measurement (docs/benchmarks.md, "Searching continuous strain"):
# train the two-detector Demo2det, simulate long H1+L1 strain, search it with Demo2det and with the
# matched filter (background by time slides), evaluate both. Every size is a variable:
#   OUT=measure DURATION=86400 SLIDES=30 STRIDE=0.5 TIMING_MODE=plateau BANK_FILE=data/reference_bank.hdf N_TRAIN=20000 bash scripts/measure_search.sh
# MLGWSC1=<checkout of gwastro/ml-mock-data-challenge-1> searches the challenge's dataset 1 (made by its own
# generate_data.py, seed DATASET_SEED) instead, and also scores both searches with the challenge's evaluate.py.
# (the defaults: one day of foreground, 31 days of background, as measured in docs/benchmarks.md)
# Speeds (seconds of strain per wall-clock second) are printed from the wall times of each step.
set -euo pipefail
PY=${PY:-python}
OUT=${OUT:-measure}
DURATION=${DURATION:-86400}      # s of foreground (and of background before slides)
SLIDES=${SLIDES:-30}             # time slides of the background for the network
MF_SLIDES=${MF_SLIDES:-$SLIDES}  # time slides of the background for the matched filter
STRIDE=${STRIDE:-0.5}            # s between the network's windows
TIMING_MODE=${TIMING_MODE:-plateau}  # network trigger times: plateau (middle) or loudest window
BANK_FILE=${BANK_FILE:-data/reference_bank.hdf}  # the reference matched filter's bank (docs/search.md)
BANK=${BANK:-}                   # instead: a farthest-point bank of this many templates (history)
MF_THREADS=${MF_THREADS:-2}      # torch threads of the matched filter
MF_THRESHOLD=${MF_THRESHOLD:-6.5}  # network SNR kept from the matched filter's slides (below 10,000/month;
                                 # the combination then skips what cannot reach it: docs/search.md)
N_TRAIN=${N_TRAIN:-20000}        # two-detector training examples
CONFIG=${CONFIG:-Demo2det}
LIMIT_FOLD=${LIMIT_FOLD-0}       # train only this fold (empty: all folds, averaged by the search)
SEED=${SEED:-13}
MLGWSC1=${MLGWSC1:-}             # a checkout of gwastro/ml-mock-data-challenge-1: search its dataset 1
                                 # (scripts/mlgwsc1_dataset.py) instead of the simulator's strain
DATASET_SEED=${DATASET_SEED:-$((SEED + 1))}  # seed of the searched strain (either kind)
mkdir -p "$OUT"
export G2NET_INPUT_DIR="$OUT/train_input" G2NET_RESULTS_DIR="$OUT/results"

step() {  # step NAME STRAIN_SECONDS COMMAND...: run, print wall time and speed
    local name=$1 seconds=$2 start end
    shift 2
    echo "+++ $name: $*"
    start=$(date +%s.%N)
    if [ -x /usr/bin/time ]; then  # CPU seconds and peak memory too
        /usr/bin/time -f "+++ $name: %U s user, %S s system, %M KB peak memory" "$@"
    else
        "$@"
    fi
    end=$(date +%s.%N)
    "$PY" -c "import sys; w = float(sys.argv[2]) - float(sys.argv[1]); s = float(sys.argv[3]); \
print(f'+++ {sys.argv[4]}: {w:.1f} s wall' + (f', {s / w:.1f} s of strain per s' if s > 0 else ''))" \
        "$start" "$end" "$seconds" "$name"
}

if [ ! -f "$G2NET_RESULTS_DIR/$CONFIG/fold0.pt" ]; then
    step simulate-train 0 "$PY" simulate.py --out "$G2NET_INPUT_DIR" --n-train "$N_TRAIN" --n-test 200 \
        --detectors H1,L1 --seed "$SEED" --workers 2 --no-progress
    step prep 0 "$PY" prep_data.py --input "$G2NET_INPUT_DIR" --cache --no-progress
    step train 0 "$PY" train.py --config "$CONFIG" ${LIMIT_FOLD:+--limit_fold "$LIMIT_FOLD"}
fi
if [ ! -f "$OUT/strain/injections.hdf" ] && [ -n "$MLGWSC1" ]; then
    step mlgwsc1-dataset 0 "$PY" scripts/mlgwsc1_dataset.py --checkout "$MLGWSC1" --duration "$DURATION" \
        --seed "$DATASET_SEED" --out "$OUT/strain" --overwrite
elif [ ! -f "$OUT/strain/injections.hdf" ]; then
    step simulate-strain 0 "$PY" simulate_strain.py --out "$OUT/strain" --duration "$DURATION" \
        --detectors H1,L1 --seed "$DATASET_SEED" --no-progress --overwrite
fi
# where the network's triggers lie relative to the merger, calibrated on a separate hour of strain
# (its own seed) whose sources are close enough (chirp distance 20-75 Mpc) to be mostly loud
step simulate-calibration 0 "$PY" simulate_strain.py --out "$OUT/calibration" --duration 3600 \
    --detectors H1,L1 --seed "$((SEED + 2))" --chirp-distance-range 20 75 --no-progress --overwrite
step search-calibration 3600 "$PY" search.py --config "$CONFIG" --input "$OUT/calibration/foreground.hdf" \
    --output "$OUT/calibration_net.hdf" --stride "$STRIDE" --trigger-time "$TIMING_MODE" --no-progress --overwrite
TIMING=$("$PY" scripts/calibrate_search_timing.py --injections "$OUT/calibration/injections.hdf" \
    --events "$OUT/calibration_net.hdf" | tee /dev/stderr | tail -1 | sed 's/^search with //')
BG=$((DURATION * (SLIDES + 1)))
MF_BG=$((DURATION * (MF_SLIDES + 1)))
# the offset holds for the calibration search's timing: the same --trigger-time (which $TIMING
# repeats, with its --plateau-drop, when it is plateau)
# shellcheck disable=SC2086  # $TIMING is several options
step search-fg "$DURATION" "$PY" search.py --config "$CONFIG" --input "$OUT/strain/foreground.hdf" \
    --output "$OUT/fg_net.hdf" --stride "$STRIDE" --trigger-time "$TIMING_MODE" $TIMING --no-progress --overwrite
# shellcheck disable=SC2086
step search-bg "$BG" "$PY" search.py --config "$CONFIG" --input "$OUT/strain/background.hdf" \
    --output "$OUT/bg_net.hdf" --stride "$STRIDE" --slides "$SLIDES" --trigger-time "$TIMING_MODE" $TIMING \
    --no-progress --overwrite
# the matched filter resumes a killed run from OUTPUT.checkpoint.npz: rerun the script to go on
# (a finished trigger file is kept)
MF_BANK=$([ -n "$BANK" ] && echo "--bank-size $BANK" || echo "--bank-file $BANK_FILE")
# shellcheck disable=SC2086  # $MF_BANK is two words
[ -f "$OUT/fg_mf.hdf" ] || step mf-fg "$DURATION" "$PY" matched_filter.py --strain "$OUT/strain/foreground.hdf" \
    --output "$OUT/fg_mf.hdf" $MF_BANK --threads "$MF_THREADS" --no-progress
# shellcheck disable=SC2086
[ -f "$OUT/bg_mf.hdf" ] || step mf-bg "$MF_BG" "$PY" matched_filter.py --strain "$OUT/strain/background.hdf" \
    --output "$OUT/bg_mf.hdf" $MF_BANK --threads "$MF_THREADS" --slides "$MF_SLIDES" --threshold "$MF_THRESHOLD" --no-progress
step evaluate 0 "$PY" evaluate_search.py --injections "$OUT/strain/injections.hdf" \
    --foreground-files "$OUT/strain/foreground.hdf" \
    --foreground-events "$OUT/fg_net.hdf" --background-events "$OUT/bg_net.hdf" --label "$CONFIG" \
    --foreground-events "$OUT/fg_mf.hdf" --background-events "$OUT/bg_mf.hdf" --label "matched filter" \
    --out "$OUT/evaluation"
if [ -n "$MLGWSC1" ]; then
    # the challenge's own scorer at zero lag: it divides by the foreground's duration, so it is given
    # the zero lag of each slid background (scripts/select_slides.py) and the same foreground
    mkdir -p "$OUT/challenge"
    if [ -d "$MLGWSC1/.git" ] || [ -f "$MLGWSC1/evaluate.py" ]; then
        cp "$MLGWSC1/evaluate.py" "$OUT/challenge/evaluate.py"
    else  # a bare or mirror git directory
        git --git-dir="$MLGWSC1" show HEAD:evaluate.py > "$OUT/challenge/evaluate.py"
    fi
    for search in net mf; do
        "$PY" scripts/select_slides.py --events "$OUT/bg_$search.hdf" --slides 0 \
            --output "$OUT/challenge/bg0_$search.hdf" --overwrite
        step "challenge-evaluate-$search" 0 "$PY" "$OUT/challenge/evaluate.py" --injection-file "$OUT/strain/injections.hdf" \
            --foreground-events "$OUT/fg_$search.hdf" --foreground-files "$OUT/strain/foreground.hdf" \
            --background-events "$OUT/challenge/bg0_$search.hdf" --output-file "$OUT/challenge/eval_$search.hdf" --force
    done
fi
