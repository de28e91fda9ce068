"""Public instruction sets shipped inside the package (Apache-2.0; sources and rows in README.md here).

    from lion_core import data
    data.path("vicuna_bench_questions.jsonl")   # -> Path of the packaged file
    data.names()                                # every packaged data file

A config names a packaged file with the `package:` scheme, e.g.
`evaluation.questions: package:vicuna_bench_questions.jsonl` or `pools.seed_path: package:seed_tasks.jsonl`;
`resolve` turns such a name into the file's path (and `package_name` turns the path back into the name, so
a run's config.yaml stays portable between machines). Any other path is left as it is.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path, PurePath

PREFIX = "package:"
SUFFIXES = (".jsonl", ".json")


def _root() -> Path:
    """The folder of the packaged files (the package is installed as plain files, not zipped)."""
    return Path(str(resources.files(__name__)))


def names() -> list[str]:
    """The packaged data files, sorted."""
    return sorted(p.name for p in _root().iterdir() if p.is_file() and p.name.endswith(SUFFIXES))


def path(name: str) -> Path:
    """The path of the packaged data file `name`; ValueError naming the packaged files if there is none."""
    if name not in names():
        raise ValueError(f"no packaged data file {name!r} (packaged: {', '.join(names())})")
    return _root() / name


def resolve(value: object) -> object:
    """`package:NAME` (a string or a path) -> the packaged file's Path; anything else unchanged."""
    if isinstance(value, (str, PurePath)) and str(value).startswith(PREFIX):
        return path(str(value)[len(PREFIX) :])
    return value


def package_name(value: Path) -> str:
    """`package:NAME` for a packaged file's path, else the path as a string (the inverse of `resolve`)."""
    if value.parent == _root() and value.name in names():
        return PREFIX + value.name
    return str(value)
