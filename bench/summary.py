"""Print a saved benchmark JSON as a table: images/s per case and, given a second (CPU) run,
the speed-up of each group over it.

    python -m bench.summary OUT/bench-cuda.json [.benchmarks/<machine>/0001_....json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NamedTuple


class Row(NamedTuple):
    group: str
    device: str
    pipeline: str
    name: str
    images_per_second: float
    extra: dict


def rows(path: Path) -> list[Row]:
    """One row per benchmark of a pytest-benchmark JSON file that has our extra_info."""
    out = []
    for bench in json.loads(path.read_text())["benchmarks"]:
        info = bench.get("extra_info", {})
        if "images_per_second" not in info:
            continue
        out.append(
            Row(
                bench.get("group") or "",
                info["device"],
                info.get("pipeline", ""),
                bench["name"],
                float(info["images_per_second"]),
                info,
            )
        )
    return sorted(out, key=lambda r: (r.group, r.device, r.pipeline))


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
    if not 1 <= len(argv) <= 2:
        print("usage: python -m bench.summary RUN.json [BASELINE.json]", file=sys.stderr)
        return 2
    paths = [Path(a) for a in argv]
    for p in paths:
        if not p.is_file():
            print(f"no such benchmark JSON: {p}", file=sys.stderr)
            return 2
    baseline = rows(paths[1]) if len(paths) == 2 else []
    print(format_table(rows(paths[0]), baseline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
