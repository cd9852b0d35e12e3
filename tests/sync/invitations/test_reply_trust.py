"""``sync.invitations.reply_trust.judge`` on the header combinations a receiving server writes.

The end-to-end paths (IMAP, the CLI, a real SMTP server's SPF/DMARC stamp) are in
tests/integration/test_invitations.py and test_invitation_delivery.py; these pin the
decision table itself.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from sync.invitations.reply_trust import judge

ME = ["mx.crm.example"]


def mail(sender: str, *results: str) -> EmailMessage:
    headers = "".join(f"Authentication-Results: {r}\r\n" for r in results)
    raw = f"{headers}From: {sender}\r\nTo: crm@crm.example\r\nSubject: x\r\n\r\nbody\r\n"
    parsed = email.message_from_string(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@pytest.mark.parametrize(
    ("sender", "results", "ids", "trusted"),
    [
        # No configured server: From decides, any failure holds, passes count for nothing.
        ("Bjørn <bjorn@partner.example>", [], [], True),
        ("bjorn@partner.example", ["anyone; spf=softfail smtp.mailfrom=x@evil.example"], [], False),
        ("mallory@evil.example", ["x; dkim=pass header.d=partner.example"], [], False),
        # Our server: an aligned pass is needed; another domain, or a bare TLD, does not align.
        ("bjorn@partner.example", ["mx.crm.example; dkim=pass header.d=partner.example"], ME, True),
        ("bjorn@partner.example", ["mx.crm.example; dkim=pass header.d=evil.example"], ME, False),
        ("bjorn@partner.example", ["mx.crm.example; dkim=pass header.d=example"], ME, False),
        (
            "bjorn@partner.example",
            ["mx.crm.example; spf=pass smtp.mailfrom=b@partner.example"],
            ME,
            True,
        ),
        # An aligned DKIM pass outweighs an SPF failure (a forwarded mail); DMARC fail never.
        (
            "bjorn@partner.example",
            [
                "mx.crm.example; spf=fail smtp.mailfrom=fwd.example;"
                " dkim=pass header.d=partner.example"
            ],
            ME,
            True,
        ),
        (
            "bjorn@partner.example",
            [
                "mx.crm.example; dkim=pass header.d=partner.example;"
                " dmarc=fail header.from=partner.example"
            ],
            ME,
            False,
        ),
        # Another server's header is ignored: its pass vouches for nothing.
        (
            "bjorn@partner.example",
            ["mx.evil.example; dmarc=pass header.from=partner.example"],
            ME,
            False,
        ),
        # Two From addresses: nobody in particular.
        ("bjorn@partner.example, mallory@evil.example", [], [], False),
    ],
)
def test_the_decision_table(sender: str, results: list[str], ids: list[str], trusted: bool) -> None:
    verdict = judge(mail(sender, *results), "bjorn@partner.example", sent_by=None, authserv_ids=ids)
    assert verdict.trusted is trusted, verdict


def test_a_delegate_named_by_sent_by_needs_an_authenticated_sender() -> None:
    delegate = "assistant@partner.example"
    plain = judge(mail(delegate), "bjorn@partner.example", sent_by=delegate, authserv_ids=[])
    assert not plain.trusted and "SENT-BY" in str(plain.reason)
    passed = mail(delegate, "mx.crm.example; dmarc=pass header.from=partner.example")
    assert judge(passed, "bjorn@partner.example", sent_by=delegate, authserv_ids=ME).trusted
    # A SENT-BY naming someone else does not let the sender in.
    other = judge(passed, "bjorn@partner.example", sent_by="boss@partner.example", authserv_ids=ME)
    assert other.reason == "sent by assistant@partner.example, not by bjorn@partner.example"


def test_an_unparseable_header_is_skipped_not_fatal() -> None:
    verdict = judge(
        mail("bjorn@partner.example", ";;; = garbage"),
        "bjorn@partner.example",
        sent_by=None,
        authserv_ids=[],
    )
    assert verdict.trusted and verdict.evidence == "none"


def test_a_signature_of_the_parent_domain_aligns() -> None:
    sub = mail("eva@mail.partner.example", "mx.crm.example; dkim=pass header.d=partner.example")
    assert judge(sub, "eva@mail.partner.example", sent_by=None, authserv_ids=ME).trusted
