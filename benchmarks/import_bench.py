"""Benchmark of the ToolEmu import: trajectories per second and peak memory.

Usage::

    python benchmarks/import_bench.py [RUNS_DIR] [--repeat N]

RUNS_DIR defaults to ``../shared/data/paper/raw_q32`` relative to the repository root; the suite
files are taken from ``../shared/data/toolemu``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

from prefkit.sources.toolemu import import_toolemu_runs, write_toolemu_import

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", nargs="?", type=Path, default=SHARED / "paper" / "raw_q32")
    parser.add_argument("--cases", type=Path, default=SHARED / "toolemu" / "all_cases.json")
    parser.add_argument("--toolkits", type=Path, default=SHARED / "toolemu" / "all_toolkits.json")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    size = sum(p.stat().st_size for p in args.runs_dir.rglob("*.jsonl"))
    print(f"runs folder {args.runs_dir} ({size / 1e6:.1f} MB of .jsonl)")
    best_read = best_write = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        result = import_toolemu_runs(args.runs_dir, cases_path=args.cases, toolkits_path=args.toolkits)
        read = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            write_toolemu_import(result, Path(tmp) / "run")
            write = time.perf_counter() - start
        best_read, best_write = min(best_read, read), min(best_write, write)
    n = len(result.trajectories or ())
    print(f"trajectories {n}, judgments {len(result.judgments or ())}")
    print(f"read+check+render: {best_read:.2f} s ({n / best_read:,.0f} trajectories/s), best of {args.repeat}")
    print(f"write run:         {best_write:.2f} s ({n / best_write:,.0f} trajectories/s)")
    print(f"end to end:        {n / (best_read + best_write):,.0f} trajectories/s")

    # Python-heap peak of one more import (tracemalloc slows it, so it is measured apart).
    tracemalloc.start()
    import_toolemu_runs(args.runs_dir, cases_path=args.cases, toolkits_path=args.toolkits)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"peak Python heap during an import: {peak / 1e6:.0f} MB (tracemalloc)")
    print(f"peak process RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB (ru_maxrss)")


if __name__ == "__main__":
    main()
