"""``python -m search.export --out DIR``: a study's confirmed winner, or any stored trial
(``--trial N``), as a recipe and weights.

Writes ``DIR/<study>-trial<N>.toml`` (every TrainConfig field; ``python -m mnistcore --recipe``
trains it and reproduces the stored curve: the validation split is fixed by the dataset) and
``DIR/<study>-trial<N>.pt`` (a ``state_dict`` for ``mnistcore.build_model``, when the artifact
store kept it). The winner is the confirmed one (search/confirm.py), with the seed of its first
confirmation run; a study that was not confirmed exports its best trial, and says so.

    python -m search.export --out exported
    python -m search.export --out exported --trial 7 --storage sqlite:///runs.db --study-name S
"""

from __future__ import annotations

import argparse
import datetime
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

from mnistcore import TrainConfig, UserError, write_recipe
from mnistcore.cli import OneLineParser, run_main, setup_logging
from search.artifacts import default_artifact_dir
from studies import trial_record as rec
from studies.confirmation import extract_confirmation, stored_records
from studies.formatting import MACHINE_DEFAULTS
from studies.intervals import format_accuracy, format_spread
from studies.storage import DEFAULT_JOURNAL, read_storage
from studies.study_data import best_trial, slugify

log = logging.getLogger("search")


class ExportError(UserError):
    """Nothing to export, or nowhere to write it."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m search.export",
        description="Write a study's confirmed winner (or trial N) as a recipe file (DIR/*.toml, "
        "every TrainConfig field; train it with python -m mnistcore --recipe FILE) plus its "
        "trained weights (DIR/*.pt, a state_dict for mnistcore.build_model).",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument(
        "--trial",
        type=_trial_number,
        metavar="N",
        help="export stored trial N (its own seed and weights) instead of the confirmed winner",
    )
    parser.add_argument(
        "--storage", default=None, help=f"the study's storage (default: {DEFAULT_JOURNAL})"
    )
    parser.add_argument(
        "--study-name", default=None, help="the study (default: the storage's only study)"
    )
    parser.add_argument(
        "--artifacts",
        metavar="DIR",
        default=None,
        help="the artifact store's folder (default: the one the study recorded, else beside "
        "the storage file)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    storage = read_storage(args.storage)
    if storage is None:
        raise ExportError(
            f"no study to export: {DEFAULT_JOURNAL} does not exist; run python -m search.study "
            "first, or give --storage"
        )
    storage_name = args.storage or str(DEFAULT_JOURNAL)
    study = _load_study(storage, args.study_name, storage_name)
    chosen = _winner(study) if args.trial is None else _trial(study, args.trial)
    _make_folder(args.out)
    stem = f"{slugify(study.study_name)}-trial{chosen['trial']}"
    store = _store(args.artifacts, study, storage_name)
    weights = args.out / f"{stem}.pt"
    got = _download(store, chosen["weights"], weights)
    command = ["python", "-m", "search.export", *(sys.argv[1:] if argv is None else argv)]
    header = [
        f"mnist-tune recipe: study {study.study_name!r}, {chosen['what']}",
        *chosen["lines"],
        f"weights: {weights.name} ({chosen['weights_note']})" if got else "weights: not stored",
        f"exported by: {shlex.join(command)} on {datetime.date.today().isoformat()}",
        f"train it: python -m mnistcore --recipe {shlex.quote(str(args.out / stem))}.toml",
    ]
    recipe = write_recipe(args.out / f"{stem}.toml", chosen["config"], header)
    print(f"recipe: {recipe}")
    if got:
        print(f"weights: {weights}")
    else:
        log.warning(
            "weights of %s are not in the artifact store %s (a study run with --artifacts "
            "none, an older study, or a store on another machine: give --artifacts DIR); "
            "wrote the recipe only",
            chosen["what"], store or "(none)",
        )  # fmt: skip
    return 0


def _load_study(
    storage: optuna.storages.BaseStorage, name: str | None, storage_name: str
) -> optuna.Study:
    names = [s.study_name for s in storage.get_all_studies()]
    if name is None:
        if len(names) != 1:
            raise ExportError(
                f"{storage_name} holds {len(names)} studies ({', '.join(names) or 'none'}); "
                "name one with --study-name"
            )
        name = names[0]
    if name not in names:
        raise ExportError(
            f"{storage_name} has no study {name!r}; it holds: {', '.join(names) or 'none'}"
        )
    return optuna.load_study(study_name=name, storage=storage)


def _winner(study: optuna.Study) -> dict[str, Any]:
    """The configuration to export: the confirmed winner with its first seed's weights, else
    the best complete trial with its own."""
    trials = study.get_trials(deepcopy=False)
    confirmation = extract_confirmation(study.user_attrs, trials)
    if confirmation is not None and confirmation.winner is None:
        raise ExportError(
            f"every seed of every confirmed configuration of study {study.study_name!r} "
            "diverged: nothing worth exporting; search lower learning rates (--lr)"
        )
    if confirmation is not None and confirmation.winner is not None:
        w = confirmation.winner
        assert w.val is not None  # a winner has seeds that trained
        record = stored_records(study.user_attrs)[w.trial]
        columns = (record[k] for k in ("seeds", "val", "test", "weights"))
        runs = list(zip(*columns, strict=True))  # stored_records checked their lengths
        trained = [r for r in runs if r[1] is not None]  # not diverged
        # the first seed whose weights are stored, else the first that trained
        seed, val, test, artifact = next((r for r in trained if r[3]), trained[0])
        return {
            "trial": w.trial,
            "what": f"the confirmed winner (trial {w.trial}'s configuration)",
            "config": _portable(w.config, seed=seed),
            "weights": artifact,
            "weights_note": f"seed {seed}: val {format_accuracy(val, w.n_val)}, test "
            f"{format_accuracy(test, w.n_test)}",
            "lines": [
                f"confirmed val {format_spread(w.val)}",
                *([f"confirmed test {format_spread(w.test)}"] if w.test else []),
                f"the search's single val: {format_accuracy(w.search_val, w.n_val)}",
            ],
        }
    shown = best_trial(trials, study.directions)
    if shown is None:
        raise ExportError(
            f"study {study.study_name!r} has no complete trial to export; run more trials "
            "with python -m search.study"
        )
    best = next(t for t in trials if t.number == shown.number)
    config = best.user_attrs.get(rec.CONFIG)
    if not config:
        raise ExportError(
            f"trial {best.number} of study {study.study_name!r} recorded no configuration "
            "(a study from an older version): nothing to write a recipe from"
        )
    log.warning(
        "study %r was not confirmed: exporting its best trial %d as the search ranked it (one "
        "run; rerun python -m search.study with --confirm auto to confirm it over seeds)",
        study.study_name, best.number,
    )  # fmt: skip
    sizes = best.user_attrs.get(rec.SPLIT_SIZES) or {}
    test = best.user_attrs.get(rec.TEST_ACCURACY)
    return {
        "trial": best.number,
        "what": f"trial {best.number}, the best of the search (not confirmed)",
        "config": _portable(config, seed=config.get("seed", 0)),
        "weights": best.user_attrs.get(rec.WEIGHTS),
        "weights_note": f"trial {best.number}'s model: test "
        f"{format_accuracy(test, sizes.get('test'))}",
        "lines": [f"val {format_accuracy(best.values[0], sizes.get('val'))} (one run)"],
    }


def _trial(study: optuna.Study, number: int) -> dict[str, Any]:
    """Trial ``number`` as it ran: its configuration and seed, its curve, its weights."""
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise ExportError(
            f"study {study.study_name!r} has trials 0..{len(trials) - 1}, not {number}; "
            "pick one from the report's trials table"
        )
    trial = trials[number]
    config = trial.user_attrs.get(rec.CONFIG)
    if not config:
        raise ExportError(
            f"trial {number} of study {study.study_name!r} recorded no configuration ("
            f"{trial.state.name.lower()} before training, or an older version): nothing to export"
        )
    per_epoch = study.user_attrs.get(rec.STEPS_PER_EPOCH, 1)
    curve = [v for step, v in sorted(trial.intermediate_values.items()) if step % per_epoch == 0]
    lines = [
        f"state {trial.state.name.lower()}; val accuracy per epoch: "
        + (", ".join(f"{v:.4f}" for v in curve) or "none reported")
    ]
    member = trial.user_attrs.get(rec.POPULATION_MEMBER, 0)
    if member:
        lines.append(
            f"trained as member {member} of a population (member 0's batch order and dropout "
            "draws): the recipe trains it alone, so its curve may differ"
        )
    return {
        "trial": number,
        "what": f"trial {number}",
        "config": _portable(config, seed=config.get("seed", 0)),
        "weights": trial.user_attrs.get(rec.WEIGHTS),
        "weights_note": f"trial {number}'s model",
        "lines": lines,
    }


def _trial_number(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a trial number is an integer >= 0, got {text!r}")
    return int(text)


def _portable(config: dict[str, Any], *, seed: int) -> TrainConfig:
    """The configuration with the given seed; where it ran (device, threads) back to defaults."""
    machine = {k: v for k, v in MACHINE_DEFAULTS.items() if k in ("device", "threads")}
    return TrainConfig(**{**config, **machine, "seed": seed})


def _store(spec: str | None, study: optuna.Study, storage_name: str) -> Path:
    recorded = study.user_attrs.get(rec.ARTIFACT_STORE)
    return Path(spec or recorded or default_artifact_dir(storage_name))


def _download(folder: Path, artifact_id: str | None, path: Path) -> bool:
    """Copy the artifact to ``path`` (replacing an earlier export); False when not stored."""
    if not artifact_id or not folder.is_dir():
        return False
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        download_artifact(
            artifact_store=FileSystemArtifactStore(folder), file_path=str(partial),
            artifact_id=artifact_id,
        )  # fmt: skip
    except ArtifactNotFound:
        return False
    partial.replace(path)
    return True


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(
            f"--out {folder} cannot be created ({e.strerror or e}); give a folder you can write"
        ) from None
    if not folder.is_dir():
        raise ExportError(f"--out {folder} is not a folder; give a folder you can write")


if __name__ == "__main__":
    run_main(main)
