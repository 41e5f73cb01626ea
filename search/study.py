"""``python -m search.study``: an Optuna study over the CNN's hyperparameters.

The command's code lives by job (see the ``search`` package docstring); ``python -m
search.study --help`` lists the flags.
"""

from mnistcore.cli import run_main


def main() -> int:
    # imported here, inside run_main's Ctrl-C guard: importing torch takes seconds
    from search.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    run_main(main)
