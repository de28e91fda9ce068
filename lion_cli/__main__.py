"""`python -m lion_cli ...` is `lion ...`."""

from lion_cli.main import app

app()
