"""Start-up under load (issue 15, item 5): the CLI gives Prefect's embedded server a generous start-up
timeout (Prefect's own 20 s was missed at load ~14); a user's own setting wins."""

from __future__ import annotations

import os
import subprocess
import sys

SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
PROBE = (
    "import lion_cli.main as m; from prefect.settings import get_current_settings as s; "
    "print(m.EMBEDDED_SERVER_STARTUP_S, s().server.ephemeral.startup_timeout_seconds)"
)


def startup_timeout(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout.split()


def test_the_cli_waits_generously_for_the_embedded_server() -> None:
    env = {k: v for k, v in os.environ.items() if k != SETTING}
    ours, prefect = startup_timeout(env)
    assert int(prefect) == int(ours) >= 60


def test_a_users_own_startup_timeout_wins() -> None:
    _, prefect = startup_timeout({**os.environ, SETTING: "7"})
    assert prefect == "7"
