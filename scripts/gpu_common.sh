# The preamble shared by the GPU scripts (gpu_throughput.sh, gpu_session.sh). Source it first:
#
#   source "$(dirname "$0")/gpu_common.sh" LOG_NAME
#
# It needs OUT, the folder that receives the results (an error if unset), makes OUT absolute,
# moves to the repository root, exports PYTHONUNBUFFERED=1, sets PY (the interpreter: $PYTHON,
# default python3), and sends everything printed from then on to the terminal and to $OUT/LOG_NAME.
# It defines:
#   limited NAME LIMIT_S COMMAND...   runs COMMAND under min(LIMIT_S, what is left of $BUDGET seconds
#                                     since the script started) and returns its exit status; with
#                                     under 30 s left it skips the step and returns 1. Set BUDGET
#                                     before the first call.
#   fresh_dir DIR                     DIR, emptied (made if missing)
#   write_env FILE                    date, nvidia-smi, CPUs, memory and the versions of python and
#                                     its packages into FILE, then prints FILE

: "${OUT:?set OUT to the folder that receives the results}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
exec > >(tee -a "$OUT/${1:?gpu_common.sh takes the log file name}") 2>&1

limited() {
    local name=$1 limit=$2
    shift 2
    local rest=$((BUDGET - SECONDS))
    if ((rest < 30)); then
        echo "+++ [${SECONDS}s] SKIP $name: ${rest}s of the ${BUDGET}s budget left"
        return 1
    fi
    ((limit > rest)) && limit=$rest
    echo "+++ [${SECONDS}s] $name (limit ${limit}s): $*"
    timeout --kill-after=15 "$limit" "$@"
    local rc=$?
    echo "+++ [${SECONDS}s] $name finished with exit status $rc"
    return $rc
}

fresh_dir() {
    rm -rf "$1"
    mkdir -p "$1"
}

write_env() {
    local env_py
    env_py=$(cat <<'EOF'
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
    { date -u; timeout 30 nvidia-smi; echo "cpus: $(nproc --all)"; free -g; timeout 60 "$PY" -c "$env_py"; } >"$1" 2>&1
    cat "$1"
}
