"""Run as: make bench   (or .venv/bin/python benchmarks/run_all.py)

Every benchmark in turn, each writing benchmarks/results/<name>.json; about 10 minutes on 2 cores.
The miniature replication is separate: `make replication`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("novelty.py", "fanout.py", "inference.py", "demo_run.py")


def main() -> None:
    for name in BENCHMARKS:
        print(f"\n## {name}\n", flush=True)
        subprocess.run([sys.executable, str(HERE / name)], check=True, cwd=HERE.parent)


if __name__ == "__main__":
    main()
