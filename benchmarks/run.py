"""Run one benchmark and print its figures; the last line is one JSON object.

    python benchmarks/run.py twin --devices 1000000
    python benchmarks/run.py NAME --help

Each benchmark lives in ``benchmarks/bench_NAME.py`` with a
``main(argv) -> dict`` function; this script finds it by name, runs it and
prints the returned dict as JSON on the last line.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in available():
        print(__doc__)
        print("benchmarks:", ", ".join(available()))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    sys.path.insert(0, str(HERE.parent))
    module = importlib.import_module(f"benchmarks.bench_{argv[0]}")
    result = module.main(argv[1:])
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
