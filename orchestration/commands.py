"""What a group of `trueup` subcommands is made of, and how groups from other packages join.

The platform's own commands are built in orchestration/cli.py. Other installed packages add
theirs through the entry-point group `trueup.commands` (pyproject.toml,
`[project.entry-points."trueup.commands"]`): each entry point names a function that takes the
parser's subparsers and adds its commands, whose `func(args, settings)` the CLI runs like its
own. So the sandbox and the demo sit on top of the platform, which never imports them.
"""
from __future__ import annotations

import argparse
import datetime as dt
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "trueup.commands"


class CliError(RuntimeError):
    """An expected failure: the message is the whole story."""


def add_registered_commands(sub) -> None:
    """Let every installed command group add its subcommands (in the groups' name order)."""
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        entry.load()(sub)


# -- argument types: a bad value is a usage error naming it ---------------------------------
def iso_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return n


def positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not x > 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} must be a number above 0")
    return x
