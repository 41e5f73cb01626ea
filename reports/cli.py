"""`python -m reports`: rebuild the HTML report from stored studies and benchmark runs."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from reports.build import AUTOSAVE, DEFAULT_BENCHMARKS, DEFAULT_OUT, build_report
from studies.storage import DEFAULT_JOURNAL, StorageError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reports",
        description="Build the offline HTML report (index.html, a page per study, "
        "benchmarks.html) from an Optuna storage and pytest-benchmark JSON files.",
    )
    parser.add_argument(
        "--storage",
        default=None,
        help="Optuna storage: a database URL (sqlite:///x.db, postgresql://...) or a journal "
        f"file path (default: {DEFAULT_JOURNAL} when it exists)",
    )
    parser.add_argument(
        "--study",
        action="append",
        dest="studies",
        metavar="NAME",
        help="report only this study (repeatable; default: every study in the storage); a "
        "name the storage does not hold is an error",
    )
    parser.add_argument(
        "--benchmarks",
        type=Path,
        help=f"folder of pytest-benchmark JSON files (default: {DEFAULT_BENCHMARKS}); a folder "
        "named here must exist",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    if args.benchmarks is not None and not args.benchmarks.is_dir():
        print(f"error: there is no benchmark folder {args.benchmarks}: pass --benchmarks the "
              f"folder `{AUTOSAVE}` writes ({DEFAULT_BENCHMARKS} by default), or leave it out",
              file=sys.stderr)  # fmt: skip
        return 2
    with warnings.catch_warnings():  # restores showwarning on the way out
        # Skipped files and undrawable figures: one line each, not a source excerpt.
        warnings.simplefilter("always")
        warnings.showwarning = lambda msg, *_, **__: print(f"warning: {msg}", file=sys.stderr)
        try:
            index = build_report(
                storage=args.storage,
                study_names=args.studies,
                benchmarks_dir=args.benchmarks or DEFAULT_BENCHMARKS,
                out_dir=args.out,
            )
        except StorageError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except OSError as error:
            if not _under(error.filename, args.out):
                raise  # not the output folder's: a bug, or a file the report reads
            print(f"error: {_unwritable(args.out, error)}", file=sys.stderr)
            return 2
    print(f"report written: {index.resolve().as_uri()}")
    return 0


def _under(filename: object, folder: Path) -> bool:
    if not isinstance(filename, str | os.PathLike):
        return False
    return Path(os.path.abspath(filename)).is_relative_to(os.path.abspath(folder))


def _unwritable(out: Path, error: OSError) -> str:
    """One line naming the output folder, why it cannot be written and the fix."""
    why = error.strerror or str(error)
    blocker = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        why = f"{blocker} is a file, not a folder"
    elif Path(error.filename) != out:
        why = f"{why}: {error.filename}"
    return f"cannot write the report to folder {out}: {why}; pass --out a folder you can write to"
