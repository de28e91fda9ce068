"""The pull step of the Lion deployments: a worker runs the flows from its clone of this repository.

deployments/prefect.yaml names it (a worker's flow run starts in a temporary directory; this step moves
it to the repository, where the entrypoints and configs/ are):

    pull:
      - flows.workspace.set_repository_directory:
          directory: "{{ $LION_REPO }}"

LION_REPO (in the worker's environment) names the clone; unset, the step uses the clone this package is
installed from (`pip install -e .`, as `make install` does), so a worker started from a clone's .venv
needs nothing set.
"""

from __future__ import annotations

import os
from pathlib import Path

ENTRYPOINT = Path("flows") / "distill.py"  # present in every clone of the repository


def installed_repository() -> Path:
    """The repository this module is loaded from (an editable install's clone)."""
    return Path(__file__).resolve().parents[1]


def set_repository_directory(directory: str = "") -> dict[str, str]:
    """Change to the repository clone: `directory` ($LION_REPO), else the installed clone; the output's
    `directory` tells Prefect where the flow code is. FileNotFoundError (one line) if it is no clone."""
    root = Path(directory).expanduser().resolve() if directory else installed_repository()
    if not (root / ENTRYPOINT).is_file():
        origin = f"LION_REPO={directory}" if directory else f"the installed package's folder {root}"
        raise FileNotFoundError(
            f"{origin}: not a clone of the Lion repository (no {ENTRYPOINT}); set LION_REPO in the "
            "worker's environment to the clone's path"
        )
    os.chdir(root)
    return {"directory": str(root)}
