"""Whether an iTIP REPLY comes from the participant it answers for.

A REPLY names its attendee inside the calendar data, and every participant of a
meeting sees the UID and everyone's addresses: anyone can write "Bjørn declined"
(RFC 6047 §3, RFC 5546 §6.1). So an answer counts only when the mail says it comes
from that participant, and the receiving server did not find the sender to be forged:

* the ``From`` address is the attendee, or the ``SENT-BY`` the attendee names (a
  delegate: Outlook's "on behalf of");
* ``Authentication-Results`` (RFC 8601), added by the server that received the mail:
  a DMARC, DKIM or SPF failure holds the answer; a pass counts only when aligned
  with the ``From`` domain (DMARC's notion: the DKIM ``d=`` or the SPF
  ``mailfrom`` domain is the ``From`` domain or a parent of it).

Anyone can put an ``Authentication-Results`` header into a mail they send. RFC 8601 §5
has the receiving server strip headers carrying its own ``authserv-id``, so only
headers with the id of our own receiving server (``[mail.imap] authserv_id``) can
vouch for a sender. Without that setting a header can only *hold* an answer (a forged
failure costs the forger nothing), never vouch for one, and an answer from the
attendee's own address is taken on its ``From`` alone, which the docs call weak. With
it, an answer needs an aligned pass from that server, and a SENT-BY answer always
needs one (the SENT-BY is written by the same sender it would vouch for).

Parsing the header is done by ``authres`` (RFC 7001/8601 grammar); what counts as
aligned, and the decision itself, is written here: no library decides "does this
mail speak for that calendar user".
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses

import authres

_FAILING = frozenset({"fail", "softfail", "permerror"})


@dataclass(frozen=True)
class Verdict:
    """Trusted or held, why, and what the decision rested on (shown to the operator)."""

    trusted: bool
    sender: str
    reason: str | None
    evidence: str


def judge(
    message: EmailMessage,
    attendee: str,
    *,
    sent_by: str | None,
    authserv_ids: list[str],
) -> Verdict:
    """Whether ``message`` may answer for ``attendee``; held answers say why."""
    sender = from_address(message)
    results = _results(message, authserv_ids)
    evidence = "; ".join(f"{method}={result}" for method, result, _ in results) or "none"
    if not sender:
        return Verdict(False, "", "the message has no single From address", evidence)
    as_delegate = sender != attendee.casefold()
    if as_delegate and sender != (sent_by or "").casefold():
        return Verdict(False, sender, f"sent by {sender}, not by {attendee}", evidence)
    domain = sender.rpartition("@")[2]
    failed = [f"{m}={r}" for m, r, _ in results if r in _FAILING]
    aligned = [
        f"{m}=pass" for m, r, d in results if r == "pass" and d is not None and _aligned(d, domain)
    ]
    dmarc_failed = any(m == "dmarc" and r in _FAILING for m, r, _ in results)
    if dmarc_failed or (failed and not aligned):
        return Verdict(
            False,
            sender,
            f"the receiving server did not authenticate {sender}: " + ", ".join(failed),
            evidence,
        )
    if authserv_ids and not aligned:
        servers = ", ".join(authserv_ids)
        return Verdict(
            False,
            sender,
            f"no passing DKIM, SPF or DMARC result for {domain} from {servers}",
            evidence,
        )
    if as_delegate and not aligned:
        return Verdict(
            False,
            sender,
            f"{sender} answers on behalf of {attendee} (SENT-BY) without an authenticated sender",
            evidence,
        )
    return Verdict(True, sender, None, evidence)


def from_address(message: EmailMessage) -> str:
    """The one ``From`` address, case-folded; "" when there is none or several."""
    values = message.get_all("From") or []
    addresses = [a for _, a in getaddresses([str(v) for v in values]) if "@" in a]
    return addresses[0].casefold() if len(addresses) == 1 else ""


def _results(message: EmailMessage, authserv_ids: list[str]) -> list[tuple[str, str, str | None]]:
    """(method, result, domain it vouches for) of the DKIM, SPF and DMARC results that count.

    With ``authserv_ids``: only the headers of those servers, with their domains. Without:
    every header, with no domain, so that its failures hold an answer and its passes,
    which anyone could have written, vouch for nothing.
    """
    wanted = {i.casefold() for i in authserv_ids}
    found: list[tuple[str, str, str | None]] = []
    for value in message.get_all("Authentication-Results") or []:
        try:
            header = authres.AuthenticationResultsHeader.parse(
                "Authentication-Results: " + " ".join(str(value).split())
            )
        except Exception:  # authres raises its own syntax errors and plain ones
            continue
        trusted = str(header.authserv_id).casefold() in wanted
        if wanted and not trusted:
            continue
        for result in header.results:
            method = str(result.method).casefold()
            if method not in ("dkim", "spf", "dmarc"):
                continue
            domain = _domain_of(method, result.properties) if trusted else None
            found.append((method, str(result.result).casefold(), domain))
    return found


def _domain_of(method: str, properties: list[object]) -> str | None:
    """The domain a result vouches for: DKIM ``header.d``, SPF ``smtp.mailfrom``, DMARC
    ``header.from``."""
    wanted = {"dkim": ("header", "d"), "spf": ("smtp", "mailfrom"), "dmarc": ("header", "from")}
    kind, name = wanted[method]
    for prop in properties:
        if (
            str(getattr(prop, "type", "")).casefold() == kind
            and str(getattr(prop, "name", "")).casefold() == name
        ):
            value = str(getattr(prop, "value", "")).casefold()
            return value.rpartition("@")[2] or None
    return None


def _aligned(signed: str, sender_domain: str) -> bool:
    """DMARC relaxed alignment, simplified: the same domain or a parent of the sender's."""
    return "." in signed and (sender_domain == signed or sender_domain.endswith("." + signed))
