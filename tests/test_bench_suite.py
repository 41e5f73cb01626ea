"""The benchmark suite's own plumbing, run as pytest runs it: the seed -> mnistcore ratios and
``python -m bench.summary``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import summary
from bench.timing import data_path_speedups, speedup_lines

ROOT = Path(__file__).resolve().parents[1]
# mnistcore's case first: the ratio must not need the seed to have run before it
CASES = [
    "bench/test_data_path.py::test_data_batch[cpu-mnistcore]",
    "bench/test_data_path.py::test_data_batch[cpu-seed]",
]


@pytest.fixture(scope="module")
def reordered_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Output and saved JSON of a short real benchmark run of the two data_batch cases."""
    out = tmp_path_factory.mktemp("bench") / "run.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        *CASES,
        "-v",
        "--quick",  # 3 seed rounds, ~1 s in all
        "--bench-data=synthetic",
        f"--benchmark-json={out}",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, out


def test_speedup_does_not_depend_on_test_order(reordered_run):
    stdout, saved = reordered_run
    # The cases ran in the order given: mnistcore before the seed.
    assert stdout.index("[cpu-mnistcore] PASSED") < stdout.index("[cpu-seed] PASSED")
    # The terminal summary still has the ratio ...
    assert "data_batch on cpu: mnistcore is" in stdout
    # ... and so has the mnistcore case in the saved JSON, equal to the two img/s measured.
    infos = {
        b["extra_info"]["pipeline"]: b["extra_info"]
        for b in json.loads(saved.read_text())["benchmarks"]
    }
    ratio = infos["mnistcore"]["images_per_second"] / infos["seed"]["images_per_second"]
    assert infos["mnistcore"]["speedup_vs_seed"] == pytest.approx(ratio)
    assert "speedup_vs_seed" not in infos["seed"]


def test_speedups_need_both_pipelines():
    seed = {"kind": "data_epoch", "device": "cpu", "pipeline": "seed", "images_per_second": 2.0}
    fast = {**seed, "pipeline": "mnistcore", "images_per_second": 8.0}
    # Either order gives the same ratio; one side alone gives none.
    assert data_path_speedups([fast, seed]) == data_path_speedups([seed, fast])
    assert data_path_speedups([seed, fast]) == {("data_epoch", "cpu"): 4.0}
    assert data_path_speedups([fast]) == {}
    # Other kinds (a train step has no seed pipeline to compare with) are left out.
    assert data_path_speedups([{**fast, "kind": "train_step"}, seed]) == {}


def test_both_pipelines_time_the_same_images_per_call(reordered_run):
    stdout, saved = reordered_run
    stats = {b["extra_info"]["pipeline"]: b for b in json.loads(saved.read_text())["benchmarks"]}
    seed, core = stats["seed"], stats["mnistcore"]
    assert seed["extra_info"]["batches_per_call"] == core["extra_info"]["batches_per_call"]
    images = seed["extra_info"]["batches_per_call"] * seed["extra_info"]["batch_size"]
    assert seed["extra_info"]["images_per_call"] == core["extra_info"]["images_per_call"] == images
    # So pytest-benchmark's per-call ratio (its table) is the summary's per-image speed-up.
    per_call = seed["stats"]["median"] / core["stats"]["median"]
    assert core["extra_info"]["speedup_vs_seed"] == pytest.approx(per_call)
    assert f"the seed, per call and per image ({images:,} images per call each)" in stdout
    printed = stdout.split("data_batch on cpu: mnistcore is ", 1)[1].split("x", 1)[0]
    assert float(printed) == pytest.approx(per_call, abs=0.05)


def test_speedup_lines_label_what_they_compare():
    seed = {
        "kind": "data_batch",
        "device": "cpu",
        "pipeline": "seed",
        "images_per_second": 2.0,
        "images_per_call": 3200,
    }
    fast = {**seed, "pipeline": "mnistcore", "images_per_second": 40.0}
    # The same images per call: one figure, per call and per image alike, with the goal.
    assert speedup_lines([fast, seed], {"data_batch": 20.0}) == [
        "data_batch on cpu: mnistcore is 20.0x the seed, per call and per image "
        "(3,200 images per call each); goal on the 2-core CPU: >= 20x"
    ]
    # Different images per call: the line says its ratio is per image only.
    (line,) = speedup_lines([{**fast, "images_per_call": 32000}, seed])
    assert line.endswith("20.0x the seed, per image (images per call: seed 3200, mnistcore 32000)")


def test_summary_prints_the_saved_run(reordered_run, capsys):
    _, saved = reordered_run
    assert summary.main([str(saved), str(saved)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["group", "device", "pipeline", "img/s", "vs", "base"]
    # One line per benchmark, each 1.0x its own baseline.
    assert [line.split()[2] for line in table[1:]] == ["mnistcore", "seed"]
    assert all(line.endswith("1.0x") for line in table[1:])


def test_summary_help_and_errors(tmp_path, capsys):
    assert summary.main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: python -m bench.summary RUN.json")
    assert summary.main([]) == 2
    assert summary.main([str(tmp_path / "absent.json")]) == 2
    assert "no such benchmark JSON" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]")
    assert summary.main([str(broken)]) == 2
    # One line naming the file, no traceback.
    err = capsys.readouterr().err
    assert str(broken) in err and err.count("\n") == 1
