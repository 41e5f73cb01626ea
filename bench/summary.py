"""Print a saved benchmark JSON as a table: images/s per case and, given a second (CPU) run,
the speed-up of each group over it.

    python -m bench.summary OUT/bench-cuda.json [.benchmarks/<machine>/0001_....json]

The files are read through ``studies.bench_data.read_run``, as the HTML report reads them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

from bench.compare import UsageError, read_rows

USAGE = "usage: python -m bench.summary RUN.json [BASELINE.json]"
HELP = f"{USAGE}\n\n{__doc__}"


class Row(NamedTuple):
    group: str
    device: str
    pipeline: str
    images_per_second: float


def rows(path: Path) -> list[Row]:
    """One row per benchmark of a pytest-benchmark JSON file that has our extra_info."""
    return sorted(
        Row(b["group"] or "", b["device"] or "", b["pipeline"] or "", b["images_per_second"])
        for b in read_rows(path)
        if b["images_per_second"] is not None
    )


def format_table(current: list[Row], baseline: list[Row]) -> str:
    base = {(r.group, r.pipeline): r for r in baseline}
    lines = [f"{'group':<44} {'device':<6} {'pipeline':<10} {'img/s':>12} {'vs base':>8}"]
    for r in current:
        b = base.get((r.group, r.pipeline))
        ratio = f"{r.images_per_second / b.images_per_second:7.1f}x" if b else ""
        ips = f"{r.images_per_second:,.0f}"
        lines.append(f"{r.group:<44} {r.device:<6} {r.pipeline:<10} {ips:>12} {ratio:>8}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(HELP)
        return 0
    if not 1 <= len(argv) <= 2 or any(a.startswith("-") for a in argv):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        tables = [rows(Path(arg)) for arg in argv]
    except UsageError as error:  # a missing file, or not a pytest-benchmark file
        print(error, file=sys.stderr)
        return 2
    print(format_table(tables[0], tables[1] if len(tables) == 2 else []))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
