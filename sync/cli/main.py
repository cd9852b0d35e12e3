"""The ``followup-sync`` command line: one click group, commands registered by modules.

This file owns only what every command shares: the group and its ``--help`` (commands
listed in ``COMMAND_SECTIONS``, the way a user looks for them), ``--version``,
``-v/--verbose`` and ``-q/--quiet`` (accepted before or after the command name), and
the rule that an error this project raises
on purpose (``FollowupSyncError``) becomes ONE line on stderr and an exit status, never
a traceback. Commands live in their own modules, each with a ``register(group)``
function; to add some, append the module to ``COMMAND_MODULES``. Keeping the group free
of command code means the mapper and the sync commands can change independently.

Exit statuses: 0 success, 1 a run failed (server, safety stop), 2 bad input (invalid
document or calendar, bad option value; click's own usage errors use 2 as well).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click

from mappings.errors import FollowupSyncError, MappingError
from sync.cli import crm, dialog, invitations, mapper, service
from sync.cli import sync as sync_commands
from sync.errors import ConfigError

#: Each command module's ``register(group)``, in the order ``--help`` lists them. Imported
#: explicitly: a command module that cannot be imported is a broken install, said at once.
COMMAND_MODULES: tuple[Callable[[click.Group], None], ...] = (
    mapper.register,
    sync_commands.register,
    dialog.register,
    invitations.register,
    service.register,
    crm.register,
)

#: ``--help`` lists the commands under these headings, in this order; a command missing
#: here is listed under "Other commands" (so a new one is never hidden).
COMMAND_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Sync and operations",
        (
            "sync",
            "status",
            "conflicts",
            "config",
            "daemon",
            "health",
            "api",
            "db",
            "invitations",
            "crm",
        ),
    ),
    (
        "Follow-ups in the store (the CRM side)",
        ("import", "export", "dates", "edit", "update", "delete", "stop"),
    ),
    ("File tools (no server, no database)", ("map", "parse", "expand", "describe")),
)

#: Errors caused by what the user gave us: exit 2, like click's usage errors.
BAD_INPUT_ERRORS: tuple[type[FollowupSyncError], ...] = (MappingError, ConfigError)
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1

log = logging.getLogger("followup-sync")

VERBOSE_HELP = "Log more to stderr: -v for progress, -vv for debugging detail."
QUIET_HELP = "Log errors only."


def _version() -> str:
    try:
        return version("followup-sync")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


class FollowupSyncGroup(click.Group):
    """A click group that turns our own errors into one line on stderr.

    Catching here, around every sub-command (parameter conversion included), is what
    lets command code simply raise ``MappingError`` and stay free of exit handling.
    """

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands by section (``COMMAND_SECTIONS``) instead of one flat list."""
        listed: set[str] = set()
        sections: list[tuple[str, tuple[str, ...]]] = []
        for title, names in COMMAND_SECTIONS:
            present = [name for name in names if name in self.commands]
            listed.update(present)
            sections.append((title, tuple(present)))
        sections.append(("Other commands", tuple(sorted(set(self.commands) - listed))))
        width = formatter.width - 6 - max((len(name) for name in self.commands), default=0)
        for title, names in sections:
            rows = [
                (name, self.commands[name].get_short_help_str(limit=width))
                for name in names
                if not self.commands[name].hidden
            ]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(cmd, name)
        add_verbosity_options(cmd)

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
@click.option("-v", "--verbose", count=True, help=VERBOSE_HELP)
@click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP)
def cli(verbose: int, quiet: bool) -> None:
    """Keep CRM follow-ups and CalDAV calendars in step.

    SuperOffice-style follow-ups (appointments, tasks and calls, with their recurrence
    patterns and hand-edited dates) are mapped to iCalendar and back. The mapper
    commands work on files and need no server: convert follow-up JSON to iCalendar
    (map) and back (parse), list the occurrences a series produces (expand), or put
    its recurrence into words (describe).
    """
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    # Set even when a handler exists already (basicConfig then does nothing).
    logging.getLogger().setLevel(_level(verbose, quiet))


def _level(verbose: int, quiet: bool) -> int:
    if quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


def _verbosity_after_command(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """``followup-sync sync -v``: the same as ``followup-sync -v sync``."""
    if not value:
        return
    quiet = param.name == "quiet"
    logging.getLogger().setLevel(_level(0 if quiet else int(value), quiet))


def add_verbosity_options(command: click.Command) -> None:
    """Give ``command`` (and a group's sub-commands) ``-v``/``-q`` of its own."""
    names = {opt for param in command.params for opt in getattr(param, "opts", ())}
    if not names & {"-v", "--verbose"}:
        command.params.append(
            click.Option(
                ["-v", "--verbose"],
                count=True,
                expose_value=False,
                callback=_verbosity_after_command,
                help=VERBOSE_HELP,
            )
        )
    if not names & {"-q", "--quiet"}:
        command.params.append(
            click.Option(
                ["-q", "--quiet"],
                is_flag=True,
                expose_value=False,
                callback=_verbosity_after_command,
                help=QUIET_HELP,
            )
        )
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_verbosity_options(sub)


def _register_commands(group: FollowupSyncGroup) -> None:
    for register in COMMAND_MODULES:
        register(group)


_register_commands(cli)


def main() -> None:
    """Console-script entry point (``followup-sync``)."""
    cli(prog_name="followup-sync")


if __name__ == "__main__":
    main()
