"""Time to accuracy: the run-to-target loops, the ratios taken at the end of a bench session, the
report's extract and tables, the shipped recipes, and the bench case run as CI runs it
(``--benchmark-disable``, a tiny target)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.ratios import add_speedups, tta_lines
from bench.time_to_accuracy import (
    KIND,
    SeedRun,
    median_reached,
    raw_pixels,
    result_info,
    run_to_target,
    tutorial_data,
    tutorial_run_to_target,
)
from mnistcore import TrainConfig, read_recipe
from reports.bench_figures import time_to_accuracy_panels
from studies.bench_data import load_benchmarks
from studies.bench_tables import time_to_accuracy_table
from tests.reports_fixtures import START, bench_case, run_document

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = TrainConfig(dataset="synthetic", device="cpu", epochs=2, batch_size=64)


# --- the loops ---------------------------------------------------------------------------------


def test_run_to_target_stops_at_the_first_epoch_that_reaches_it(synthetic):
    run = run_to_target(SYNTHETIC.replace(epochs=3), synthetic, 0.2)
    # Synthetic digits pass 20 % after one epoch: one epoch trained, its seconds counted.
    assert run.reached and run.epochs == 1 and len(run.accuracies) == 1
    assert run.accuracy >= 0.2 and run.seconds > 0


def test_run_to_target_trains_its_cap_when_not_reached(synthetic):
    # A target above 100 % is never reached: a one-cycle recipe trains its planned epochs ...
    run = run_to_target(SYNTHETIC.replace(schedule="onecycle"), synthetic, 1.01)
    assert not run.reached and run.epochs == 2
    # ... and a constant lr up to 10, whatever its epochs say.
    run = run_to_target(SYNTHETIC.replace(epochs=1, lr=1e-4), synthetic, 1.01)
    assert run.epochs == 10


def test_tutorial_loop_trains_the_same_pixels(synthetic):
    train, test = tutorial_data(synthetic)
    # The tutorial's dataset serves exactly the training images fit uses (pixels recovered).
    raw = raw_pixels(synthetic.train, synthetic.mean, synthetic.std)
    again = raw.float().div(255).sub(synthetic.mean).div(synthetic.std).unsqueeze(1)
    assert torch.allclose(again, synthetic.train.images, atol=1e-5)
    image, label = train[0]
    assert image.shape == (1, 28, 28) and label == int(synthetic.train.labels[0])
    assert test.images.shape == synthetic.test.images.shape
    run = tutorial_run_to_target(train, test, 0.2, seed=0, device=torch.device("cpu"), cap=2)
    assert run.reached and run.epochs == 1


def test_median_counts_a_seed_not_reached_as_infinitely_slow():
    def runs(*seconds):
        return [SeedRun(i, s is not None, s or 9.0, 1, (0.5,)) for i, s in enumerate(seconds)]

    assert median_reached(runs(3.0, 1.0, 2.0), "seconds") == 2.0
    # One seed of three not reached: the median seed still did.
    assert median_reached(runs(3.0, None, 2.0), "seconds") == 3.0
    # Two of three not reached: the median seed did not.
    assert median_reached(runs(3.0, None, None), "seconds") is None


# --- ratios at the end of the session ----------------------------------------------------------


def tta_info(recipe, seconds, *, dataset="fashion-mnist", device="cpu", target=0.89, cap=10):
    """A time-to-accuracy case's extra_info; ``seconds`` per seed, None where not reached."""
    runs = [
        SeedRun(i, s is not None, cap * 1.0 if s is None else s, 3 if s else cap, (0.9,))
        for i, s in enumerate(seconds)
    ]
    return {"kind": KIND, "recipe": recipe, "dataset": dataset, "device": device,
            "epoch_cap": cap, **result_info(runs, target)}  # fmt: skip


def test_speedups_do_not_depend_on_the_order_cases_finished():
    infos = [tta_info("tuned", [2.0, 2.2, 2.1]), tta_info("tutorial", [6.0, 6.6, 6.3])]
    add_speedups(infos)
    tuned, tutorial = infos
    # The tutorial recipe's median / the tuned one's, whichever ran first.
    assert tuned["speedup_vs_seed"] == pytest.approx(6.3 / 2.1)
    assert tutorial["speedup_vs_seed"] == 1.0
    assert "speedup_vs_seed_at_least" not in tuned


def test_a_tutorial_recipe_not_reached_gives_a_lower_bound():
    infos = [
        tta_info("tutorial", [None, None, 2.0], dataset="mnist-5k", target=0.97),
        tta_info("tuned", [0.5, 0.4, 0.6], dataset="mnist-5k", target=0.97),
        tta_info("tuned", [None, None, 1.0]),  # fashion-mnist: not reached, no tutorial row
    ]
    add_speedups(infos)
    # The tutorial's seconds over all its capped epochs (median 10) bound its time from below.
    assert infos[1]["speedup_vs_seed_at_least"] == pytest.approx(10 / 0.5)
    assert "speedup_vs_seed" not in infos[1]
    assert "speedup_vs_seed" not in infos[2] and "speedup_vs_seed_at_least" not in infos[2]
    lines = tta_lines(infos)
    assert lines[0].startswith("fashion-mnist cpu tuned: 89.0% not reached within 10 epochs")
    assert lines[1].startswith("mnist-5k cpu tutorial: 97.0% not reached")
    assert lines[2].endswith(">= 20.00x the tutorial recipe")


# --- the report's extract and tables -----------------------------------------------------------


def tta_case(info: dict) -> dict:
    """A time-to-accuracy benchmark as pytest-benchmark saves it (no img/s)."""
    case = bench_case(KIND, info["device"], 1.0, model="seed")
    case["group"] = f"{KIND}[{info['dataset']}-{info['target']:.0%}-{info['recipe']}]"
    case["name"] = f"test_time_to_accuracy[{info['device']}-{info['dataset']}-{info['recipe']}]"
    case["extra_info"] = {**info, "batch_size": 64, "device_name": "AMD EPYC"}
    return case


def tta_rows(tmp_path: Path):
    infos = [
        tta_info("tutorial-dataloader", [13.0, 14.0, 12.5]),
        tta_info("tuned", [2.0, 2.2, 2.1]),
        tta_info("tutorial", [6.0, 6.6, 6.3]),
        tta_info("tutorial", [None, None, None], dataset="mnist-5k", target=0.97),
        tta_info("tuned", [0.5, 0.4, 0.6], dataset="mnist-5k", target=0.97),
    ]
    add_speedups(infos)  # as bench/conftest.py does when the session ends
    cases = [tta_case(i) for i in infos] + [bench_case("train_step", "cpu", 15000.0)]
    machine = tmp_path / "box"
    machine.mkdir()
    (machine / "0001_x.json").write_text(json.dumps(run_document(cases, START)))
    return load_benchmarks(tmp_path).rows


def test_table_has_one_row_per_dataset_device_and_recipe_baseline_first(tmp_path):
    table = time_to_accuracy_table(tta_rows(tmp_path))
    keys = list(zip(table["dataset"], table["recipe"], strict=True))
    assert keys == [
        ("fashion-mnist", "tutorial"), ("fashion-mnist", "tuned"),
        ("fashion-mnist", "tutorial-dataloader"), ("mnist-5k", "tutorial"), ("mnist-5k", "tuned"),
    ]  # fmt: skip
    tuned = table.iloc[1]
    assert tuned["seconds_to_target"] == pytest.approx(2.1)
    assert tuned["seconds_per_seed"] == (2.0, 2.2, 2.1)
    assert tuned["speedup_vs_seed"] == pytest.approx(3.0)
    assert tuned["epochs_to_target"] == 3 and tuned["target"] == 0.89
    # Not reached: no seconds, no ratio of its own; the tuned recipe's ratio is a lower bound.
    tutorial_5k, tuned_5k = table.iloc[3], table.iloc[4]
    assert not tutorial_5k["reached"] and math.isnan(tutorial_5k["seconds_to_target"])
    assert math.isnan(tuned_5k["speedup_vs_seed"])
    assert tuned_5k["speedup_vs_seed_at_least"] == pytest.approx(10 / 0.5)


def test_panels_one_table_per_dataset_and_device(tmp_path):
    panels = time_to_accuracy_panels(tta_rows(tmp_path), "run")
    assert [p.key for p in panels] == ["tta-fashion-mnist-cpu-run", "tta-mnist-5k-cpu-run"]
    (table,) = panels[1].figure.data
    recipe, target, median, per_seed, seeds, epochs, speedup = table.cells.values
    assert list(median) == ["not reached", "0.5"]
    assert list(per_seed)[0] == "10.0+, 10.0+, 10.0+" and list(epochs)[0] == "> 10"
    assert list(speedup) == ["–", "≥ 20.00×"]
    assert list(panels[0].figure.data[0].cells.values[6]) == ["1.00×", "3.00×", "0.48×"]


def test_run_without_time_to_accuracy_cases_gets_a_note(tmp_path):
    machine = tmp_path / "box"
    machine.mkdir()
    document = run_document([bench_case("train_step", "cpu", 15000.0)], START)
    (machine / "0001_x.json").write_text(json.dumps(document))
    rows = load_benchmarks(tmp_path).rows
    assert time_to_accuracy_table(rows).empty
    (panel,) = time_to_accuracy_panels(rows, "run")
    assert panel.figure is None and "test_time_to_accuracy.py" in panel.missing


# --- the shipped recipes ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fashion-mnist-89", "mnist-5k-97"])
def test_shipped_recipes_read_back_and_say_how_they_were_made(name):
    path = ROOT / "bench" / "recipes" / f"{name}.toml"
    config = read_recipe(path)
    assert config.dataset == name.rsplit("-", 1)[0] and config.seed == 0
    # The header names the command that made the recipe and the commit that had that tuner.
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    assert "\n# made by: python -m bench.tune_time_to_accuracy --dataset " in header
    assert "git show ca508c9:bench/tune_time_to_accuracy.py" in header


# --- the bench case as CI runs it --------------------------------------------------------------


def run_bench(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "bench/test_time_to_accuracy.py", *args,
               "-p", "no:randomly", "-p", "no:cacheprovider"]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_bench_runs_under_benchmark_disable_with_a_tiny_target():
    done = run_bench("--benchmark-disable", "-q", "-k", "cpu")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # Every CPU case trained one seed to 50 % and printed its line.
    assert "time to accuracy (training seconds, test accuracy), this run" in done.stdout
    assert "mnist-5k cpu tuned: 50.0% in " in done.stdout
    assert "failed" not in done.stdout


def test_saved_run_has_the_speedup_whatever_the_order(tmp_path):
    out = tmp_path / "run.json"
    # The tuned case first: its ratio must not need the tutorial's case to have run before.
    cases = [f"bench/test_time_to_accuracy.py::test_time_to_accuracy[cpu-mnist-5k-{r}]"
             for r in ("tuned", "tutorial")]  # fmt: skip
    command = [
        sys.executable,
        "-m",
        "pytest",
        *cases,
        "-q",
        "--tta-target",
        "0.5",
        "--tta-seeds",
        "2",
        f"--benchmark-json={out}",
        "-p",
        "no:cacheprovider",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    infos = {b["extra_info"]["recipe"]: b["extra_info"]
             for b in json.loads(out.read_text())["benchmarks"]}  # fmt: skip
    tuned, tutorial = infos["tuned"], infos["tutorial"]
    # the bench seeds are 100, 101, ...: seeds the tuner never saw
    assert len(tuned["seconds_per_seed"]) == 2 and tuned["seeds"] == [100, 101]
    ratio = tutorial["seconds_to_target"] / tuned["seconds_to_target"]
    assert tuned["speedup_vs_seed"] == pytest.approx(ratio)
    assert tuned["recipe_file"] == "bench/recipes/mnist-5k-97.toml"
