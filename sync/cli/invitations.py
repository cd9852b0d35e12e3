"""``followup-sync invitations``: who answered what, send what is due, read replies.

    followup-sync invitations [--json]            participants' answers per follow-up
    followup-sync invitations outbox [--json]     every message and whether it went out
    followup-sync invitations send --config F     send pending messages (SMTP, [mail])
    followup-sync invitations fetch --config F    read REPLY messages ([mail.imap])
    followup-sync invitations resend ID --config F   send an "uncertain" message again
    followup-sync invitations held [--json]       answers held: not shown to come from the attendee
    followup-sync invitations accept ID / reject ID   decide on a held answer

A sync pass records what is due (``sync.invitations.record.record_due``); ``send`` delivers it.
``followup-sync daemon`` does both on its own: it sends an account's messages right after
each pass of that account and reads ``[mail.imap]`` every ``poll_seconds``, so these
commands are for one-shot use, cron, and looking at the outbox.
"""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from sync.cli.options import (
    config_option,
    database_option,
    open_database,
    open_settings,
    settings_or_defaults,
)
from sync.config import Settings
from sync.errors import ConfigError
from sync.invitations import replies, send
from sync.mail_config import MailSettings


def register(group: click.Group) -> None:
    group.add_command(invitations_group)


@click.group("invitations", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@database_option
@config_option
@click.pass_context
def invitations_group(
    ctx: click.Context, as_json: bool, database: str | None, config_path: str | None
) -> None:
    """Invitations to participants: answers, sending (SMTP) and replies (IMAP)."""
    if ctx.invoked_subcommand is not None:
        return
    db = open_database(open_settings(config_path), database, create=False)
    rows = replies.answers(db)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table(title="Participants' answers")
    for column in ("Follow-up", "Title", "Participant", "Answer", "Per occurrence", "Held"):
        table.add_column(column)
    for row in rows:
        per = ", ".join(f"{k}: {v}" for k, v in sorted(row["occurrences"].items())) or "-"
        who = f"{row['name']} <{row['email']}>" if row["name"] else row["email"]
        waiting = ", ".join(_held_text(h) for h in row["held"]) or "-"
        table.add_row(row["followup"], row["title"], who, row["status"], per, waiting)
    Console().print(table)
    if any(row["held"] for row in rows):
        click.echo("Held answers wait for 'invitations accept ID' or 'invitations reject ID'.")


def _held_text(held: dict[str, object]) -> str:
    where = f" ({held['occurrence']})" if held["occurrence"] else ""
    return f"#{held['id']} {held['answer']}{where} from {held['sender'] or '?'}"


@invitations_group.command("held")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@database_option
@config_option
def held_command(as_json: bool, database: str | None, config_path: str | None) -> None:
    """Answers held because the mail is not shown to come from the participant."""
    db = open_database(open_settings(config_path), database)
    rows = replies.held(db)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table(title="Held answers")
    for column in ("Id", "Follow-up", "Participant", "Answer", "Occurrence", "Sent by", "Why"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["followup"] or "-",
            r["attendee"],
            r["answer"],
            r["occurrence"] or "-",
            r["sender"] or "-",
            r["reason"] or "-",
        )
    Console().print(table)


@invitations_group.command("accept")
@click.argument("ids", nargs=-1, type=int, required=True)
@database_option
@config_option
def accept_command(ids: tuple[int, ...], database: str | None, config_path: str | None) -> None:
    """Apply held answers: the operator vouches for the sender."""
    _decide(ids, database, config_path, accept=True)


@invitations_group.command("reject")
@click.argument("ids", nargs=-1, type=int, required=True)
@database_option
@config_option
def reject_command(ids: tuple[int, ...], database: str | None, config_path: str | None) -> None:
    """Drop held answers: they are kept in the record as rejected, and never applied."""
    _decide(ids, database, config_path, accept=False)


def _decide(
    ids: tuple[int, ...], database: str | None, config_path: str | None, *, accept: bool
) -> None:
    db = open_database(open_settings(config_path), database)
    for record_id in ids:
        o = replies.decide_held(db, record_id, accept=accept)
        where = f" ({o.recurrence_id})" if o.recurrence_id else ""
        click.echo(f"#{record_id} {o.outcome}: {o.attendee} {o.partstat}{where} — {o.reason}")


@invitations_group.command("outbox")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@database_option
@config_option
def outbox_command(as_json: bool, database: str | None, config_path: str | None) -> None:
    """Every invitation message recorded, and whether it was sent."""
    db = open_database(open_settings(config_path), database, create=False)
    rows = replies.outbox(db)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table(title="Invitation messages")
    for column in ("Id", "Follow-up", "Method", "Seq", "To", "Occurrence", "Status", "Sent"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["followup"],
            r["method"],
            str(r["sequence"]),
            r["recipient"],
            r["occurrence"] or "-",
            r["status"],
            r["sent_at"] or "-",
        )
    Console().print(table)


def _mail(settings: Settings) -> MailSettings:
    if settings.mail is None:
        raise ConfigError("no [mail] table in the config: invitations cannot be sent or read")
    return settings.mail


@invitations_group.command("send")
@database_option
@config_option
def send_command(database: str | None, config_path: str | None) -> None:
    """Send the invitation messages the sync passes recorded."""
    settings = settings_or_defaults(config_path)
    db = open_database(settings, database, create=False)
    report = send.send_pending(_mail(settings), db)
    click.echo(
        f"sent {len(report.sent)}, failed {len(report.failed)}, uncertain {len(report.uncertain)}"
    )
    for row_id, error in report.failed:
        click.echo(f"  #{row_id}: {error}", err=True)
    if report.failed:
        raise SystemExit(1)


@invitations_group.command("resend")
@click.argument("ids", nargs=-1, type=int, required=True)
@database_option
@config_option
def resend_command(ids: tuple[int, ...], database: str | None, config_path: str | None) -> None:
    """Send messages again on purpose (an 'uncertain' one after a crash): the identical message."""
    settings = settings_or_defaults(config_path)
    db = open_database(settings, database, create=False)
    report = send.send_pending(_mail(settings), db, only=ids)
    click.echo(f"sent {len(report.sent)}, failed {len(report.failed)}")


@invitations_group.command("fetch")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@database_option
@config_option
def fetch_command(as_json: bool, database: str | None, config_path: str | None) -> None:
    """Read iTIP replies from [mail.imap] and update the participants' answers."""
    settings = settings_or_defaults(config_path)
    db = open_database(settings, database, create=False)
    outcomes = replies.fetch_replies(_mail(settings), db)
    if as_json:
        click.echo(json.dumps([o.__dict__ for o in outcomes], indent=2, ensure_ascii=False))
        return
    for o in outcomes:
        where = f" ({o.recurrence_id})" if o.recurrence_id else ""
        line = f"{o.outcome}: {o.attendee or '?'} {o.partstat or ''}{where} for {o.uid or '?'}"
        click.echo(line + (f" — {o.reason}" if o.reason else ""))
