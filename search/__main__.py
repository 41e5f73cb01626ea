"""``python -m search`` is ``python -m search.study``."""

from mnistcore.cli import run_main
from search.study import main

if __name__ == "__main__":
    run_main(main)
