"""The ``followup-sync`` command line: one click group, commands registered by modules.

This file owns only what every command shares: the group and its ``--help``,
``--version``, ``-v/--verbose`` logging, and the rule that an error this project raises
on purpose (``FollowupSyncError``) becomes ONE line on stderr and an exit status, never
a traceback. Commands live in their own modules, each with a ``register(group)``
function; to add some, append the module to ``COMMAND_MODULES``. Keeping the group free
of command code means the mapper and the sync commands can change independently.

Exit statuses: 0 success, 1 a run failed (server, safety stop), 2 bad input (invalid
document or calendar, bad option value; click's own usage errors use 2 as well).
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click

from mappings.errors import FollowupSyncError, MappingError
from sync.errors import ConfigError

#: Modules whose ``register(group)`` adds commands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "sync.cli_mapper",
    "sync.cli_sync",
    "sync.cli_dialog",
    "sync.cli_invitations",
    "sync.cli_daemon",
)

#: Errors caused by what the user gave us: exit 2, like click's usage errors.
BAD_INPUT_ERRORS: tuple[type[FollowupSyncError], ...] = (MappingError, ConfigError)
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1

log = logging.getLogger("followup-sync")


def _version() -> str:
    try:
        return version("followup-sync")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


class FollowupSyncGroup(click.Group):
    """A click group that turns our own errors into one line on stderr.

    Catching here, around every sub-command (parameter conversion included), is what
    lets command code simply raise ``MappingError`` and stay free of exit handling.
    ``unavailable`` names command modules that could not be imported, so ``--help`` and
    an unknown command say why a command is missing instead of just "No such command".
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unavailable: dict[str, str] = {}

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        if self.unavailable:
            formatter.write_paragraph()
            formatter.write_text(f"Not loaded (missing modules): {self._unavailable_text()}")

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            if not self.unavailable:
                raise
            message = f"{exc.message} (not loaded: {self._unavailable_text()})"
            raise click.UsageError(message, ctx=exc.ctx) from None

    def _unavailable_text(self) -> str:
        return "; ".join(f"{name}: {reason}" for name, reason in self.unavailable.items())

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FollowupSyncError as exc:
            log.debug("command failed", exc_info=True)
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_BAD_INPUT if isinstance(exc, BAD_INPUT_ERRORS) else EXIT_FAILED)


@click.group(
    cls=FollowupSyncGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=(
        "\b\n"
        "Examples:\n"
        "  followup-sync describe examples/followups.json\n"
        "  followup-sync map examples/followups.json > followups.ics\n"
        "  followup-sync parse followups.ics\n"
        "\n"
        "FILE may be '-' to read standard input. Invalid input exits with status 2 "
        "and one line on stderr naming the follow-up and the field."
    ),
)
@click.version_option(_version(), "--version", prog_name="followup-sync")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log more to stderr: -v for progress, -vv for debugging detail.",
)
def cli(verbose: int) -> None:
    """Keep CRM follow-ups and CalDAV calendars in step.

    SuperOffice-style follow-ups (appointments, tasks and calls, with their recurrence
    patterns and hand-edited dates) are mapped to iCalendar and back. The mapper
    commands work on files and need no server: convert follow-up JSON to iCalendar
    (map) and back (parse), list the occurrences a series produces (expand), or put
    its recurrence into words (describe).
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _register_commands(group: FollowupSyncGroup) -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            # A command module whose dependencies are missing (or not written yet) must
            # not take the other commands down with it; --help says what is missing.
            group.unavailable[name] = str(exc)
            continue
        module.register(group)


_register_commands(cli)


def main() -> None:
    """Console-script entry point (``followup-sync``)."""
    cli(prog_name="followup-sync")


if __name__ == "__main__":
    main()
