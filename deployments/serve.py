"""Serve the distill flow locally with a cron schedule (no work pool or worker needed).

Run as:  python deployments/serve.py --config configs/demo.yaml --cron "0 3 * * *"

With `prefect server start` running (and PREFECT_API_URL pointing at it), the deployment and its
scheduled runs appear in the UI; this process executes them.
"""

from __future__ import annotations

import argparse

from prefect import serve

from flows.distill import distill_from_file

DEFAULT_CRON = "0 3 * * *"  # every day at 03:00


def deployment(config_path: str, cron: str = DEFAULT_CRON, run_dir: str | None = None):
    """The scheduled distill deployment (validated against the flow's parameters)."""
    return distill_from_file.to_deployment(
        name="distill-scheduled",
        cron=cron,
        parameters={"config_path": config_path, "run_dir": run_dir},
        tags=["lion", "scheduled"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml", help="YAML config of the runs.")
    parser.add_argument("--cron", default=DEFAULT_CRON, help="Cron schedule.")
    parser.add_argument("--run-dir", default=None, help="Run directory (default: the config's).")
    args = parser.parse_args()
    serve(deployment(args.config, args.cron, args.run_dir))


if __name__ == "__main__":
    main()
