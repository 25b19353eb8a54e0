# Sourced by the device scripts: run steps under a shared time budget.
#   BUDGET=seconds; source scripts/budget.sh; limited NAME LIMIT_S COMMAND...
# runs COMMAND under min(LIMIT_S, what is left of BUDGET since the script started) and returns its
# exit status; with under 30 s left it skips the step and returns 1.
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
