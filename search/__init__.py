"""search: Optuna studies over the CNN of ``mnistcore`` (run ``python -m search.study``).

Modules by job: ``space`` (what is searched), ``objective`` (one trial's training), ``cli``
(flags, ``main``), ``setup`` (storage, study, sampler, pruner, data), ``run`` (the trial loop,
``--workers N``), ``recovery`` (crashed workers' trials), ``locks`` (the per-study lock),
``console`` (progress, trial lines) and ``summary`` (the end-of-run text). The storage opener
and the study extract live in ``reports`` (torch-free), which the search imports.

Public API::

    from search import DEFAULT_SPACE, Objective, build_space, suggest
    config = suggest(optuna.trial.FixedTrial({...}), DEFAULT_SPACE)   # -> TrainConfig
    study_objective = Objective(load_dataset("mnist-5k"), build_space(overrides={"lr": "0.1"}))
"""

from __future__ import annotations

from search.cli import build_parser, main
from search.objective import OBJECTIVES, Objective, git_commit, run_stamps
from search.run import run_study
from search.setup import StudyError, StudySettings
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
from search.summary import format_summary

__all__ = [
    "DEFAULT_SPACE",
    "OBJECTIVES",
    "SEARCHABLE",
    "START_POINT",
    "Choice",
    "Objective",
    "Range",
    "SearchSpace",
    "SpaceError",
    "StudyError",
    "StudySettings",
    "build_parser",
    "build_space",
    "check_space",
    "describe_space",
    "format_summary",
    "git_commit",
    "main",
    "parse_dimension",
    "read_space_file",
    "run_stamps",
    "run_study",
    "start_params",
    "suggest",
]
