"""Serve the distill flow from this process: no work pool, no worker.

Run as:  python deployments/serve.py --config configs/demo.yaml --cron "0 3 * * *"

Two deployments, executed by this process while it runs:
  distill-from-file/served     the config file on a cron schedule (the file is read at each run);
  distill/served-form          the config model as the parameter, pre-filled with the file's values:
                               the Prefect UI shows it as a form (Run > Custom run) to edit and start.
With `prefect server start` running and PREFECT_API_URL pointing at it, both appear in the UI; start one
with `prefect deployment run 'distill-from-file/served'` (tests/e2e/test_deployments.py does).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import serve

from flows.distill import distill, distill_from_file
from lion_core.config import load_config

DEFAULT_CRON = "0 3 * * *"  # every day at 03:00
TAGS = ["lion", "served"]


def deployment(config_path: str, cron: str = DEFAULT_CRON, run_dir: str | None = None):
    """The scheduled distill deployment of a config file (validated against the flow's parameters)."""
    return distill_from_file.to_deployment(
        name="served",
        cron=cron,
        parameters={"config_path": config_path, "run_dir": run_dir},
        tags=[*TAGS, "scheduled"],
    )


def form_deployment(config_path: str, run_dir: str | None = None):
    """The distill deployment whose parameter is the config model, pre-filled from the file."""
    config = load_config(config_path)
    if run_dir is not None:
        config.run_dir = Path(run_dir)
    return distill.to_deployment(
        name="served-form", parameters={"config": config.model_dump(mode="json")}, tags=TAGS
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml", help="YAML config of the runs.")
    parser.add_argument("--cron", default=DEFAULT_CRON, help="Cron schedule of the config-file deployment.")
    parser.add_argument("--run-dir", default=None, help="Run directory (default: the config's).")
    args = parser.parse_args()
    serve(deployment(args.config, args.cron, args.run_dir), form_deployment(args.config, args.run_dir))


if __name__ == "__main__":
    main()
