"""bench/gpu_check.sh without a GPU: its syntax, its refusal on a CPU machine, its control flow
with a fake python, and its pytest plugin; plus the two mnistcore fixes it relies on
(one data copy per GPU, ``--threads`` on CUDA)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

import mnistcore.data as data_module
import mnistcore.population as population_module
from mnistcore import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.sh"

# Stands in for python on a CUDA machine: logs each call (arguments, PYTHONPATH) and answers
# as each step's real command would, quickly. The study fails if its journal already exists.
FAKE_PY = r"""#!/usr/bin/env bash
args="$*"
echo "$args | PYTHONPATH=$PYTHONPATH UNBUFFERED=$PYTHONUNBUFFERED" >> "$FAKE_LOG"
case $args in
    -) cat > /dev/null; echo "python 3.12.3 torch 2.11.0 cuda 13.0"; echo "gpu Fake count 1" ;;
    "-m pip install"*) ;;
    "-m pytest tests"*) echo "2 passed" ;;
    *"cuda and not population"*)
        json=${args##*--benchmark-json }; json=${json%% *}; echo '{"fresh": 1}' > "$json"
        echo "11 passed" ;;
    *"cuda and population"*) echo "no tests ran"; exit 5 ;;
    "-m pytest bench/test_time_to_accuracy.py"*) echo "4 passed" ;;
    "-m bench.summary"*) shift 2; echo "TABLE OF $*" ;;
    "-m search.study --help") echo "usage: python -m search.study [--n-trials N_TRIALS]" ;;
    "-m search.study"*)
        journal=${args##*--storage }; journal=${journal%% *}
        [ ! -e "$journal" ] || { echo "resumed an old study"; exit 1; }
        echo "trial 0" > "$journal" ;;
    -c*) ;;
    *) echo "fake python: unexpected call: $*"; exit 3 ;;
esac
"""


def run_script(out: Path, env: dict[str, str], timeout: float = 60):
    return subprocess.run(
        ["bash", str(SCRIPT), str(out)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stale_out(tmp_path: Path) -> Path:
    """An OUTDIR holding what an earlier run left, and a file of the user's."""
    out = tmp_path / "out"
    (out / "gpu-check").mkdir(parents=True)
    for name in ("study-cuda.journal", "bench-cuda.json", "tests-cuda.log"):
        (out / "gpu-check" / name).write_text("STALE\n")
    (out / "summary.txt").write_text("STALE\n")
    (out / "gpu-check.tar.gz").write_text("STALE\n")
    (out / "notes.txt").write_text("mine\n")
    return out


def test_script_syntax() -> None:
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_refuses_a_cpu_machine_in_one_line(tmp_path: Path) -> None:
    out = stale_out(tmp_path)
    start = time.monotonic()
    done = run_script(out, {"PY": sys.executable})
    # Exit 2 at once (one torch import), one line on stderr, said in summary.txt too.
    assert done.returncode == 2 and time.monotonic() - start < 30
    assert done.stderr.count("\n") == 1 and "not a CUDA machine" in done.stderr
    assert (out / "summary.txt").read_text() == done.stderr
    # What an earlier run left is gone; the user's file stays.
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "summary.txt"]


def test_fake_cuda_run_starts_clean_and_packs_everything(tmp_path: Path) -> None:
    fake, log = tmp_path / "python", tmp_path / "calls.log"
    fake.write_text(FAKE_PY)
    fake.chmod(0o755)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "optuna-5.0.0-py3-none-any.whl").write_bytes(b"")
    out = stale_out(tmp_path)
    env = {"PY": str(fake), "FAKE_LOG": str(log), "WHEELS": str(wheels)}
    done = run_script(out, {**env, "CPU_JSON": str(tmp_path / "missing.json")})
    assert done.returncode == 0, done.stdout + done.stderr

    # Two loose files (and the user's): the rest is in the archive.
    loose = sorted(p.name for p in out.iterdir())
    assert loose == ["gpu-check.tar.gz", "notes.txt", "summary.txt"]
    summary = (out / "summary.txt").read_text().splitlines()
    # A missing CPU_JSON is one warning line, and the CUDA table is still made, from the
    # CUDA JSON alone.
    assert sum("CPU_JSON" in line for line in summary) == 1
    table = [line for line in summary if line.startswith("TABLE OF")]
    assert len(table) == 1 and table[0].split()[2:] == [str(out / "gpu-check/bench-cuda.json")]
    # Population benchmarks and study do not exist yet: one skip line each, not a failure.
    assert [line.split(",")[0] for line in summary if "population: skipped" in line] == [
        "bench-population: skipped",
        "study-population: skipped",
    ]
    with tarfile.open(out / "gpu-check.tar.gz") as tar:
        names = set(tar.getnames())
        journal = tar.extractfile("gpu-check/study-cuda.journal").read()  # type: ignore[union-attr]
        bench_json = tar.extractfile("gpu-check/bench-cuda.json").read()  # type: ignore[union-attr]
    # The rerun did not resume the old study (the fake refuses to) nor keep the old JSON.
    assert journal == b"trial 0\n" and json.loads(bench_json) == {"fresh": 1}
    assert {"summary.txt", "gpu-check/env.txt", "gpu-check/tests-cuda.log"} <= names
    assert not any("STALE" in tar_name for tar_name in names)

    calls = log.read_text().splitlines()
    # Every step after the wheels sees them on PYTHONPATH, and Python's output is unbuffered.
    after_wheels = calls[[i for i, c in enumerate(calls) if c.startswith("-m pip")][0] + 1 :]
    assert after_wheels and all(re.search(r"PYTHONPATH=\S*/packages\b", c) for c in after_wheels)
    assert all(c.endswith("UNBUFFERED=1") for c in calls)
    # The benchmarks default to --quick.
    bench = next(c for c in calls if "cuda and not population" in c)
    assert "--quick" in bench


BENCHES = """
import pathlib, time

def test_finished(benchmark):
    benchmark.pedantic(lambda: None, rounds=3)

def test_cut_off(benchmark):
    def target():
        pathlib.Path("started").touch()
        time.sleep(0.2)
    benchmark.pedantic(target, rounds=1000)
"""


def test_a_benchmark_cut_off_by_sigint_is_left_out_and_the_finished_ones_saved(
    tmp_path: Path,
) -> None:
    # bench/conftest.py's hooks, loaded as a plugin into a tiny suite of two benchmarks
    (tmp_path / "test_benches.py").write_text(BENCHES)
    command = [sys.executable, "-m", "pytest", "test_benches.py", "-p", "bench.conftest"]
    command += ["-p", "no:cacheprovider", "--benchmark-json=run.json", "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a few rounds of the cut-off case are in
    proc.send_signal(signal.SIGINT)  # what `timeout --signal=INT` sends
    output = proc.communicate(timeout=60)[0]
    # The JSON is written, with the finished case only (not the one cut off after 3 rounds).
    saved = json.loads((tmp_path / "run.json").read_text())
    assert [b["name"] for b in saved["benchmarks"]] == ["test_finished"], output


# --- mnistcore: one data copy per GPU ----------------------------------------------------------


def test_device_key_cpu_is_one_key() -> None:
    assert data_module._device_key("cpu") == data_module._device_key(torch.device("cpu"))
    assert str(data_module._device_key("cpu")) == "cpu"


def test_device_key_cuda_names_the_current_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    # "cuda" and "cuda:0" are one GPU: one cache key, so one copy of the data.
    assert str(data_module._device_key("cuda")) == str(data_module._device_key("cuda:0"))
    assert data_module._device_key("cuda") == torch.device("cuda", 0)
    assert data_module._device_key("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert data_module._device_key("cuda") == torch.device("cuda", 1)


def test_device_key_leaves_cuda_alone_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # No current device to ask for: "cuda" stays as given (moving data there fails anyway).
    assert data_module._device_key("cuda") == torch.device("cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_and_cuda0_share_one_copy(synthetic) -> None:
    current = torch.cuda.current_device()
    on_gpu = synthetic.to("cuda")
    assert on_gpu is synthetic.to(f"cuda:{current}") and on_gpu.device.index == current
    # A copy asked to move to its own GPU is itself.
    assert on_gpu.to("cuda") is on_gpu


# --- mnistcore: --threads applies on CUDA too --------------------------------------------------


class _Stop(Exception):
    pass


def test_fit_sets_threads_on_cuda_too(synthetic, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def configure_threads(threads: int) -> int:
        calls.append(threads)
        raise _Stop  # before anything needs a real GPU

    monkeypatch.setattr(population_module, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(population_module, "configure_threads", configure_threads)
    with pytest.raises(_Stop):
        next(fit(TrainConfig(device="cuda", dataset="synthetic", threads=3), synthetic))
    # The CPU still runs the Python side and the data work, so --threads counts there too.
    assert calls == [3]
