"""Trained weights kept through Optuna's artifact API (``optuna.artifacts``): a trial among the
study's best KEEP_BEST when it completes (user attr ``weights``: the artifact id) and every
confirmation seed (an artifact of the study). ``optuna-dashboard --artifact-dir`` on the same
folder lists them.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.trial import TrialState
from torch import nn

from mnistcore import UserError, save_weights
from studies import trial_record as rec

log = logging.getLogger("search")

KEEP_BEST = 5  # complete trials whose weights are kept: those among the best 5 when they end
NONE = "none"  # --artifacts none: keep no weights


class ArtifactStoreError(UserError):
    """The artifact folder cannot be created or written."""


def default_artifact_dir(storage_name: str) -> Path:
    """The store beside the study's file (``reports/optuna-journal.log`` ->
    ``reports/optuna-journal-artifacts``, ``sqlite:///runs/a.db`` -> ``runs/a-artifacts``); for a
    database server, ``optuna-artifacts`` in the working folder."""
    if storage_name.startswith("sqlite:///"):
        path = Path(storage_name.removeprefix("sqlite:///"))
    elif "://" in storage_name:
        return Path("optuna-artifacts")
    else:
        path = Path(storage_name)
    return path.with_name(f"{path.stem}-artifacts")


def open_artifact_store(spec: str | None, storage_name: str) -> FileSystemArtifactStore | None:
    """The store for ``--artifacts spec`` (None: beside the storage; ``none``: no store), made
    and checked writable before any training (else one ArtifactStoreError line)."""
    if spec == NONE:
        return None
    folder = Path(spec) if spec else default_artifact_dir(storage_name)
    probe = folder / f".write-test-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ArtifactStoreError(
            f"artifact folder {folder} cannot be written ({e.strerror or e}); give "
            "--artifacts DIR a writable folder, or --artifacts none to keep no weights"
        ) from None
    return FileSystemArtifactStore(folder)


def store_path(store: FileSystemArtifactStore) -> Path:
    return Path(store._base_path).resolve()


def upload_weights(
    store: FileSystemArtifactStore,
    model: nn.Module,
    filename: str,
    *,
    owner: optuna.Study | optuna.trial.BaseTrial,
    what: str,
) -> str | None:
    """Store ``model``'s weights as artifact ``filename`` of ``owner``; the artifact id, or None
    with a warning naming ``what``: a full disk must not cost the result just trained."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, filename)
            save_weights(model, path)
            owned: Any = owner
            return upload_artifact(artifact_store=store, file_path=path, study_or_trial=owned)
    except OSError as e:
        log.warning(
            "%s weights not kept: artifact store %s: %s", what, store_path(store), e.strerror or e
        )
        return None


def load_weights(store: FileSystemArtifactStore, artifact_id: str) -> dict[str, Any]:
    """The state_dict stored as ``artifact_id``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "weights.pt")
        download_artifact(artifact_store=store, file_path=path, artifact_id=artifact_id)
        return torch.load(path, map_location="cpu", weights_only=True)


@dataclass
class Keeper:
    """``Keeper(store)(trial, value, model)``: keep a complete trial's weights when its value
    is among the best ``keep`` of the study's complete trials so far (in a two-objective study
    every front member could matter: all are kept)."""

    store: FileSystemArtifactStore
    keep: int = KEEP_BEST

    def __call__(self, trial: optuna.trial.Trial, value: float, model: nn.Module) -> None:
        if len(trial.study.directions) == 1:
            done = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if sum(1 for t in done if t.values and t.values[0] > value) >= self.keep:
                return
        name = f"trial-{trial.number}-weights.pt"
        artifact_id = upload_weights(
            self.store, model, name, owner=trial, what=f"trial {trial.number}'s"
        )
        if artifact_id is not None:
            trial.set_user_attr(rec.WEIGHTS, artifact_id)
