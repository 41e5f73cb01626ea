"""Ratios between the cases of one run, taken from their ``extra_info`` once every case has
finished, whatever order they ran in: the data path against the seed's, a population against the
single model, time to accuracy against the tutorial recipe. bench/conftest.py writes them into
the saved JSON (``add_speedups``) and the terminal summary (the ``*_lines``)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Hashable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from bench.time_to_accuracy import BASELINE, KIND, RECIPES

Info = Mapping[str, Any]
DATA_KINDS = ("data_batch", "data_epoch")  # the kinds measured for both pipelines


def _pairs(
    infos: Iterable[Info],
    kinds: Sequence[str],
    key: Callable[[Info], Hashable],
    is_base: Callable[[Info], bool],
) -> list[tuple[Any, Info]]:
    """(case, its baseline) for each case of ``kinds`` whose baseline, the case of the same
    ``key`` that ``is_base``, is in ``infos`` (a baseline is paired with itself)."""
    infos = [i for i in infos if i.get("kind") in kinds]
    bases = {key(i): i for i in infos if is_base(i)}
    return [(i, bases[key(i)]) for i in infos if key(i) in bases]


def _data_ratios(infos: Iterable[Info]) -> list[tuple[Any, Info, float]]:
    """(mnistcore case, its seed case, mnistcore img/s / seed img/s), by kind and device."""
    pairs = _pairs(
        infos, DATA_KINDS, lambda i: (i["kind"], i["device"]), lambda i: i["pipeline"] == "seed"
    )
    ratios = [
        (i, seed, i["images_per_second"] / seed["images_per_second"])
        for i, seed in pairs
        if i["pipeline"] == "mnistcore"
    ]
    return sorted(ratios, key=lambda r: (r[0]["kind"], r[0]["device"]))


def _net(info: Info) -> tuple:
    """What a population and its single-model baseline share: the same net, trained alike."""
    return (info["device"], info["model"], info["batch_size"], info["precision"])


def _population_ratios(infos: Iterable[Info]) -> list[tuple[Any, Info, float]]:
    """(population case, its single model, member-img/s / the single model's img/s), by device,
    net and K."""
    pairs = _pairs(infos, ("population_step",), _net, lambda i: i["mode"] == "single")
    ratios = [
        (i, single, i["member_images_per_second"] / single["images_per_second"])
        for i, single in pairs
        if i["mode"] == "population"
    ]
    return sorted(ratios, key=lambda r: (r[0]["device"], r[0]["model"], r[0]["population"]))


def _tta_key(info: Info) -> tuple:
    return (info.get("dataset"), info.get("device"), info.get("target"))


def _tta_ratios(infos: Iterable[Info]) -> list[tuple[Any, tuple[float, bool]]]:
    """(case, (the tutorial recipe's median seconds / the case's, exact)) for each case that
    reached the target. Where the tutorial recipe did not, its median over the seconds it
    trained (all its capped epochs) bounds its time from below, and so the ratio (exact False)."""
    ratios = []
    for i, tutorial in _pairs(infos, (KIND,), _tta_key, lambda i: i.get("recipe") == BASELINE):
        seconds = i.get("seconds_to_target")
        if not seconds:
            continue
        if tutorial.get("seconds_to_target"):
            ratios.append((i, (tutorial["seconds_to_target"] / seconds, True)))
        elif tutorial.get("seconds_per_seed"):
            ratios.append((i, (statistics.median(tutorial["seconds_per_seed"]) / seconds, False)))
    return ratios


def data_path_speedups(infos: Iterable[Info]) -> dict[tuple[str, str], float]:
    """(kind, device) -> mnistcore img/s / seed img/s (= seed seconds per image / mnistcore's)."""
    return {(i["kind"], i["device"]): ratio for i, _, ratio in _data_ratios(infos)}


def population_speedups(infos: Iterable[Info]) -> dict[tuple[str, str, int], float]:
    """(device, model, K) -> member img/s of K members / the single model's img/s (same net)."""
    return {
        (i["device"], i["model"], i["population"]): ratio
        for i, _, ratio in _population_ratios(infos)
    }


def add_speedups(infos: list[MutableMapping[str, Any]]) -> None:
    """Set ``speedup_vs_seed`` on the mnistcore data-path and time-to-accuracy cases (``_at_least``
    where the ratio is a lower bound), ``speedup_vs_single`` on the population cases."""
    for i, _, ratio in _data_ratios(infos):
        i["speedup_vs_seed"] = ratio
    for i, _, ratio in _population_ratios(infos):
        i["speedup_vs_single"] = ratio
    for i, (ratio, exact) in _tta_ratios(infos):
        i["speedup_vs_seed" if exact else "speedup_vs_seed_at_least"] = ratio


def _goal(targets: Mapping | None, key: object, device: str) -> str:
    goal = (targets or {}).get(key) if device == "cpu" else None
    return f"; goal on the 2-core CPU: >= {goal:g}x" if goal is not None else ""


def speedup_lines(infos: Iterable[Info], targets: Mapping[str, float] | None = None) -> list[str]:
    """The data-path ratios and the images per call they compare: when both pipelines time the
    same images per call, the ratio is per call (pytest-benchmark's table) and per image alike."""
    lines = []
    for i, seed, ratio in _data_ratios(infos):
        ours, theirs = i.get("images_per_call"), seed.get("images_per_call")
        if ours == theirs and ours is not None:
            basis = f"per call and per image ({ours:,} images per call each)"
        else:
            basis = f"per image (images per call: seed {theirs}, mnistcore {ours})"
        lines.append(
            f"{i['kind']} on {i['device']}: mnistcore is {ratio:.1f}x the seed, {basis}"
            + _goal(targets, i["kind"], i["device"])
        )
    return lines


def population_lines(
    infos: Iterable[Info], targets: Mapping[tuple[str, int], float] | None = None
) -> list[str]:
    """One line per device, preset and K: the ratio and the two speeds it divides."""
    return [
        f"population_step on {i['device']}, {i['model']} K={i['population']}: "
        f"{ratio:.2f}x the single model's img/s ({i['member_images_per_second']:,.0f} "
        f"member-img/s vs {single['images_per_second']:,.0f} img/s, batch {i['batch_size']})"
        + _goal(targets, (i["model"], i["population"]), i["device"])
        for i, single, ratio in _population_ratios(infos)
    ]


def tta_lines(infos: Iterable[Info]) -> list[str]:
    """Per time-to-accuracy case its median seconds to the target, each seed's, and its ratio
    to the tutorial recipe."""
    infos = sorted(
        (i for i in infos if i.get("kind") == KIND),
        key=lambda i: (str(i["dataset"]), str(i["device"]), RECIPES.index(i["recipe"])),
    )
    ratios = {(*_tta_key(i), i["recipe"]): found for i, found in _tta_ratios(infos)}
    lines = []
    for info in infos:
        per_seed = ", ".join(
            f"{s:.1f}" + ("" if ok else "+")
            for s, ok in zip(info["seconds_per_seed"], info["reached_per_seed"], strict=True)
        )
        head = f"{info['dataset']} {info['device']} {info['recipe']}: {info['target']:.1%}"
        if info["seconds_to_target"] is None:
            lines.append(
                f"{head} not reached within {info['epoch_cap']} epochs "
                f"(seeds: {per_seed} s; + = not reached)"
            )
            continue
        ratio, exact = ratios.get((*_tta_key(info), info["recipe"]), (None, True))
        versus = ""
        if ratio is not None and info["recipe"] != BASELINE:
            versus = f"; {'' if exact else '>= '}{ratio:.2f}x the tutorial recipe"
        lines.append(
            f"{head} in {info['seconds_to_target']:.1f} s training (median), "
            f"{info['epochs_to_target']:g} epochs (seeds: {per_seed} s){versus}"
        )
    return lines
