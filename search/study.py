"""``python -m search.study``: an Optuna study over the CNN's hyperparameters.

The command's code lives by job: search/cli.py (flags, ``main``), search/setup.py (storage,
study, sampler, pruner, data), search/run.py (the trial loop, ``--workers N``),
search/recovery.py (crashed workers' trials), search/console.py (progress, trial lines) and
search/summary.py (the end-of-run summary). ``python -m search.study --help`` lists the flags.
"""

from mnistcore.cli import run_main


def main() -> int:
    # imported here, inside run_main's Ctrl-C guard: importing torch takes seconds
    from search.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    run_main(main)
