"""``python -m search.study``: an Optuna study over the CNN's hyperparameters (``--help``)."""

from mnistcore.cli import run_main


def main() -> int:
    # imported here, inside run_main's Ctrl-C guard: importing torch takes seconds
    from search.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    run_main(main)
