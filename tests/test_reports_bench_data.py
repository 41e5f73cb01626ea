"""The extract layer of the report on pytest-benchmark JSON files written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reports.bench_figures import population_panels
from studies.bench_data import case_label, load_benchmarks, machine_rows, machine_summary
from studies.bench_tables import data_path_table, headline, population_table, speedup_table
from tests.reports_fixtures import START, bench_case, run_document, write_benchmarks


@pytest.fixture()
def bench_dir(tmp_path: Path) -> Path:
    return write_benchmarks(tmp_path / ".benchmarks")


def _load_quietly(directory: Path):
    with pytest.warns(UserWarning, match="0003_broken"):
        return load_benchmarks(directory)


def test_corrupted_file_is_skipped_with_a_warning_naming_it(bench_dir):
    with pytest.warns(UserWarning, match=r"skipped benchmark file .*0003_broken_.*\.json"):
        data = load_benchmarks(bench_dir)
    assert [path.name for path, _ in data.skipped] == ["0003_broken_20261103_090000.json"]
    # The two readable runs still count, oldest first.
    assert [run.label for run in data.runs] == [
        "Linux-CPython-3.11-64bit/0001",
        "Linux-CPython-3.11-64bit/0002",
    ]
    assert data.latest.n_benchmarks == len(data.rows_of(data.latest)) == 14


def test_files_that_are_json_but_not_benchmarks_are_skipped(tmp_path):
    machine = tmp_path / "m"
    machine.mkdir()
    (machine / "0001_list.json").write_text("[1, 2]")
    (machine / "0002_binary.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.warns(UserWarning) as caught:
        data = load_benchmarks(tmp_path)
    assert data.runs == [] and len(data.skipped) == 2
    messages = " | ".join(str(w.message) for w in caught)
    assert "0001_list.json" in messages and "0002_binary.json" in messages


def test_missing_folder_gives_no_runs(tmp_path):
    data = load_benchmarks(tmp_path / "absent")
    assert data.runs == [] and data.rows.empty and data.latest is None
    assert headline(data.rows).cpu_images_per_second is None


def test_case_label_leaves_the_device_out():
    cpu = bench_case("train_step", "cpu", 1.0, model="w64")
    cuda = bench_case("train_step", "cuda", 1.0, model="w64")
    assert case_label(cpu) == case_label(cuda) == "train_step[w64-bs256-fp32-cl]"
    # Data cases share a group across pipelines, so the pipeline joins the label.
    seed = bench_case("data_batch", "cpu", 1.0, pipeline="seed", group="data_batch[bs64]")
    assert case_label(seed) == "data_batch[bs64] · seed"
    # No group: the parametrize id without its device.
    assert case_label({"name": "test_x[cuda-w16]", "params": {}}) == "test_x[w16]"


def test_speedups_pair_cpu_and_cuda_of_one_case(bench_dir):
    data = _load_quietly(bench_dir)
    table = speedup_table(data.rows_of(data.latest))
    row = table.set_index("case").loc["train_step[w64-bs256-fp32-cl]"]
    assert (row["cpu"], row["cuda"]) == (4000, 160000)
    assert row["speedup"] == pytest.approx(40.0)
    # The older run measured the CPU only: nothing to pair.
    assert speedup_table(data.rows_of(data.runs[0])).empty


def test_data_path_table_compares_seed_and_mnistcore(bench_dir):
    data = _load_quietly(bench_dir)
    table = data_path_table(data.rows_of(data.latest)).set_index(["group", "device"])
    assert table.loc[("data_batch[bs64]", "cpu"), "speedup"] == pytest.approx(110000 / 5200)
    assert table.loc[("data_epoch[bs64]", "cuda"), "speedup"] == pytest.approx(3 * 14000 / 4800)


def test_headline_is_the_fastest_train_step_per_device(bench_dir):
    data = _load_quietly(bench_dir)
    top = headline(data.rows_of(data.latest))
    assert (top.cpu_images_per_second, top.cuda_images_per_second) == (15000, 210000)
    assert top.cuda_case == "train_step[seed-bs256-fp32-cl]"
    # Speed-ups of the two train-step cases: 14x and 40x.
    assert (top.paired_cases, top.speedup_min, top.speedup_max) == pytest.approx((2, 14, 40))


def test_cpu_only_run_has_no_cuda_headline(tmp_path):
    machine = tmp_path / "cpu-box"
    machine.mkdir()
    doc = run_document(
        [bench_case("train_step", "cpu", 12000.0)],
        START,
        machine_info={"node": "cpu-box", "gpu_name": None},
    )
    (machine / "0001_x.json").write_text(json.dumps(doc))
    data = load_benchmarks(tmp_path)
    top = headline(data.rows)
    assert top.cpu_images_per_second == 12000 and top.cuda_images_per_second is None
    assert top.paired_cases == 0
    assert "no GPU" in machine_summary(data.latest)


def test_machine_rows_flatten_and_leave_long_lists_out(bench_dir):
    data = _load_quietly(bench_dir)
    rows = dict(machine_rows(data.latest))
    assert rows["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert rows["cpu.brand_raw"] == "AMD EPYC"
    assert "cpu.flags" not in rows
    assert rows["commit"] == "05824bc0ffee"


def population_case(device: str, model: str, k: int | None, ips: float, speedup=None) -> dict:
    """A population_step benchmark as bench/test_population.py saves it; ``k`` None is the
    single-model baseline."""
    batch = 128 if model == "study" else 64
    size = "single" if k is None else f"K{k}"
    case = bench_case(
        "population_step", device, ips, model=model, batch_size=batch,
        group=f"population_step[{model}-bs{batch}-{size}]",
    )  # fmt: skip
    case["extra_info"].update(
        mode="single" if k is None else "population",
        population=k or 1,
        member_images_per_second=ips,
    )
    if speedup is not None:
        case["extra_info"]["speedup_vs_single"] = speedup
    return case


def population_run() -> list[dict]:
    """CPU: both presets at K = 1, 8, 16 with their baselines; CUDA: the study net at K = 1, 256
    with no baseline (its ratio missing); plus a train step, which is no population case."""
    cases = [bench_case("train_step", "cpu", 15000.0)]
    for model, single, rates in (
        ("seed", 12000.0, {1: 20000.0, 8: 27000.0, 16: 30000.0}),
        ("study", 8000.0, {1: 7600.0, 8: 10400.0, 16: 9600.0}),
    ):
        cases.append(population_case("cpu", model, None, single))
        cases += [population_case("cpu", model, k, v, v / single) for k, v in rates.items()]
    cases += [population_case("cuda", "study", k, v) for k, v in ((1, 9e4), (256, 2.4e6))]
    return cases


def _population_rows(tmp_path: Path, cases: list[dict]):
    machine = tmp_path / "box"
    machine.mkdir()
    (machine / "0001_x.json").write_text(json.dumps(run_document(cases, START)))
    return load_benchmarks(tmp_path).rows


def test_population_table_pairs_each_k_with_its_baseline(tmp_path):
    table = population_table(_population_rows(tmp_path, population_run()))
    # One row per device, preset and K; the baselines are not rows of their own.
    keys = list(zip(table["device"], table["model"], table["population"], strict=True))
    assert keys == [
        ("cpu", "seed", 1), ("cpu", "seed", 8), ("cpu", "seed", 16),
        ("cpu", "study", 1), ("cpu", "study", 8), ("cpu", "study", 16),
        ("cuda", "study", 1), ("cuda", "study", 256),
    ]  # fmt: skip
    row = table.set_index(["device", "model", "population"]).loc[("cpu", "study", 8)]
    assert row["member_images_per_second"] == 10400
    assert row["single_images_per_second"] == 8000
    assert row["speedup_vs_single"] == pytest.approx(1.3)
    assert row["batch_size"] == 128
    # Without a baseline in the run, the CUDA rows have neither its img/s nor a ratio.
    cuda = table[table["device"] == "cuda"]
    assert cuda["single_images_per_second"].isna().all()
    assert cuda["speedup_vs_single"].isna().all()


def test_population_rows_keep_k_mode_and_rates(tmp_path):
    rows = _population_rows(tmp_path, population_run())
    single = rows[(rows["kind"] == "population_step") & (rows["mode"] == "single")]
    assert set(single["population"]) == {1} and single["speedup_vs_single"].isna().all()
    # images_per_second counts member-images: the same figure as member_images_per_second.
    fused = rows[rows["mode"] == "population"]
    assert (fused["images_per_second"] == fused["member_images_per_second"]).all()


def test_run_without_population_cases_has_an_empty_table_and_a_note(tmp_path):
    rows = _population_rows(tmp_path, [bench_case("train_step", "cpu", 15000.0)])
    assert population_table(rows).empty
    (panel,) = population_panels(rows, "run")
    assert panel.figure is None and "no population_step case" in panel.missing


def test_population_panels_one_per_device(tmp_path):
    rows = _population_rows(tmp_path, population_run())
    panels = population_panels(rows, "run")
    assert [p.key for p in panels] == ["population-cpu-run", "population-cuda-run"]
    cpu = panels[0]
    # One line per preset plus each preset's dashed single-model line.
    names = [trace.name for trace in cpu.figure.data]
    assert names == ["seed (bs 64)", "seed: single model", "study (bs 128)", "study: single model"]
    assert "study K=8 1.30x" in cpu.caption
    assert "no single-model baseline" in panels[1].caption
