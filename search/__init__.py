"""search: Optuna studies over the CNN of ``mnistcore`` (run ``python -m search.study``).

Public API::

    from search import DEFAULT_SPACE, Objective, build_space, suggest
    config = suggest(optuna.trial.FixedTrial({...}), DEFAULT_SPACE)   # -> TrainConfig
    study_objective = Objective(load_dataset("mnist-5k"), build_space(overrides={"lr": "0.1"}))
"""

from __future__ import annotations

from typing import Any

from search.objective import OBJECTIVES, Objective, git_commit, run_stamps
from search.space import (
    DEFAULT_SPACE,
    SEARCHABLE,
    START_POINT,
    Choice,
    Range,
    SearchSpace,
    SpaceError,
    build_space,
    check_space,
    describe_space,
    parse_dimension,
    read_space_file,
    start_params,
    suggest,
)
from search.storage import DEFAULT_STORAGE, StorageError, open_storage
from search.summary import Summary, format_summary, summarize

# Imported on first use: ``python -m search.study`` runs that module as __main__, and importing
# it here first would make runpy warn about a module found in sys.modules before execution.
_LAZY = {"StudyError", "StudySettings", "build_parser", "main", "run_study"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from search import study

        return getattr(study, name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")


__all__ = [
    "DEFAULT_SPACE",
    "DEFAULT_STORAGE",
    "OBJECTIVES",
    "SEARCHABLE",
    "START_POINT",
    "Choice",
    "Objective",
    "Range",
    "SearchSpace",
    "SpaceError",
    "StorageError",
    "StudyError",
    "StudySettings",
    "Summary",
    "build_parser",
    "build_space",
    "check_space",
    "describe_space",
    "format_summary",
    "git_commit",
    "main",
    "open_storage",
    "parse_dimension",
    "read_space_file",
    "run_stamps",
    "run_study",
    "start_params",
    "suggest",
    "summarize",
]
