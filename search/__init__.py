"""search: Optuna studies over the CNN of ``mnistcore`` (run ``python -m search.study``).

Modules by job: ``cli`` (flags, settings, ``main``), ``setup`` (storage, study, sampler,
pruner, data), ``space`` (what is searched), ``objective`` (one batch of trials' training),
``run`` (the trial loop), ``workers`` (``--workers N``), ``recovery`` (crashed workers' trials),
``locks`` (the study lock), ``confirm`` (retraining the best over seeds), ``artifacts`` (kept
weights), ``console`` and ``summary`` (what is printed), ``export`` (recipe and weights). The
package imports nothing itself: ``python -m search.study`` imports torch inside its Ctrl-C
guard, so an interrupt during start-up is one line and exit code 130.
"""
