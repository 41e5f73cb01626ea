"""search: Optuna studies over the CNN of ``mnistcore`` (run ``python -m search.study``).

Modules by job: ``space`` (what is searched), ``objective`` (one trial's training), ``cli``
(flags, ``main``), ``setup`` (storage, study, sampler, pruner, data), ``run`` (the trial loop,
``--workers N``), ``recovery`` (crashed workers' trials), ``locks`` (the per-study lock),
``console`` (progress, trial lines) and ``summary`` (the end-of-run text). The storage opener
and the study extract live in ``reports`` (torch-free), which the search imports.

Import from the modules::

    from search.space import DEFAULT_SPACE, build_space, suggest
    from search.objective import Objective
    config = suggest(optuna.trial.FixedTrial({...}), DEFAULT_SPACE)   # -> TrainConfig
    objective = Objective(load_dataset("mnist-5k"), build_space(overrides={"lr": "0.1"}))

The package itself imports nothing: ``python -m search.study`` imports torch only inside its
Ctrl-C guard, so an interrupt during start-up is one line and exit code 130, not a traceback.
"""
