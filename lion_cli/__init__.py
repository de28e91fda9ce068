"""The `lion` command line (`lion_cli.main:app`); `python -m lion_cli` runs it too.

Importing the package, or `lion --help`, loads neither torch, transformers, the world server nor
Prefect's flows: every command imports what it needs inside its own function.
"""
