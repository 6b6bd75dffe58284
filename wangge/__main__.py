"""`python -m wangge` runs the CLI."""

from wangge.cli import app

app()
