"""Where the tests find the repository's files, whatever folder of tests/ they are in."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
BENCHMARKS = REPO / "benchmarks"
TEST_DATA = REPO / "tests" / "data"


def benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ imported as a module (benchmarks/ is not a package: it goes on sys.path,
    as the scripts themselves import each other by name)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)
