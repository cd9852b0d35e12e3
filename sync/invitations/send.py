"""Step 2: the SMTP outbox. Send each recorded message once, and never twice after a crash.

Each row goes ``pending`` → ``sending`` (committed) → SMTP → ``sent`` (committed); a row
found in ``sending`` at start was caught in between and becomes ``uncertain`` (at most
once: see the package docstring). The rows live in ``sync.state.invitation_records``.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sync.errors import FollowupSyncError
from sync.mail_config import MailSettings
from sync.state import invitation_records as records
from sync.state.db import Database

log = logging.getLogger(__name__)


@dataclass
class SendReport:
    sent: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)


def send_pending(
    mail: MailSettings,
    db: Database,
    *,
    account: str | None = None,
    only: Iterable[int] | None = None,
    after_smtp: Callable[[int, int], None] | None = None,
) -> SendReport:
    """Send every pending message (or the ``only`` ids, uncertain ones included) once.

    ``after_smtp(row_id, position)`` is called right after the SMTP server accepted a
    message and before it is recorded as sent: the crash window the package docstring
    describes, which a caller (the crash test) can step into.
    """
    records.ensure_tables(db)
    report = SendReport()
    with db.sessions.begin() as session:
        report.uncertain.extend(records.mark_interrupted(session, account))
    with db.session() as session:
        ids = records.ids_to_send(session, account, only)
    if not ids:
        return report
    with _smtp(mail) as smtp:
        for position, row_id in enumerate(ids, 1):
            with db.sessions.begin() as session:
                data, recipient = records.start_sending(session, row_id)
            try:
                smtp.sendmail(mail.sender_address, [recipient], data)
            except (smtplib.SMTPException, OSError) as exc:
                with db.sessions.begin() as session:
                    records.mark_failed(session, row_id, str(exc))
                report.failed.append((row_id, str(exc)))
                log.warning("invitation %s to %s failed: %s", row_id, recipient, exc)
                continue
            if after_smtp is not None:
                after_smtp(row_id, position)
            with db.sessions.begin() as session:
                records.mark_sent(session, row_id)
            report.sent.append(row_id)
    return report


def unsent(db: Database, account: str) -> int:
    """This account's messages that still need a send: pending, failed, or caught mid-send.

    One cheap query, so the daemon asks after every pass and opens no SMTP connection
    when there is nothing to send (the daemon runs on a current schema: no table check).
    """
    with db.session() as session:
        return records.count_unsent(session, account)


class _smtp:
    """An SMTP connection as the config asks for it (plain, STARTTLS or SSL), logged in."""

    def __init__(self, mail: MailSettings) -> None:
        self.mail = mail
        self.conn: smtplib.SMTP | None = None

    def __enter__(self) -> smtplib.SMTP:
        mail = self.mail
        try:
            if mail.security == "ssl":
                self.conn = smtplib.SMTP_SSL(
                    mail.host,
                    mail.smtp_port,
                    timeout=mail.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                self.conn = smtplib.SMTP(mail.host, mail.smtp_port, timeout=mail.timeout)
                if mail.security == "starttls":
                    self.conn.starttls(context=ssl.create_default_context())
            password = mail.password()
            if mail.username and password is not None:
                self.conn.login(mail.username, password)
        except (smtplib.SMTPException, OSError) as exc:
            raise FollowupSyncError(
                f"cannot reach the SMTP server {mail.host}:{mail.smtp_port}: {exc}"
            ) from None
        return self.conn

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (smtplib.SMTPException, OSError):
                self.conn.close()
