"""Invitations to participants outside the CRM: iTIP by email (iMIP, RFC 6047) and replies.

Three steps, each safe to repeat and to interrupt:

1. **Record** (``record.record_due``, called by the sync pass after it applied its changes):
   per follow-up with participants, compare the CRM document with the one the
   participants were last told about (``invitation_state``). When an invitation is due
   (created, significant change, occurrence cancelled, deleted, participant added or
   removed), the messages are rendered and stored as ``pending`` rows in
   ``invitations`` in the SAME transaction that moves ``invitation_state`` on. So
   either both happen or neither: a crash before the commit leaves the state behind
   and the next pass decides the same again; after it, the rows are there to be sent.
   Title and description edits send nothing (SuperOffice notifies invitees of time,
   date and location changes only), and neither do the participants' own answers.
   A reschedule (a REQUEST with a higher SEQUENCE) asks the participants again: their
   answers go back to needs-action, for the series or only for the occurrences that
   moved, on the follow-up (saved in the same transaction) and in the REQUEST.
2. **Send** (``send.send_pending``): one message per recipient, in a fixed order. Each row
   goes ``pending`` → ``sending`` (committed) → SMTP → ``sent`` (committed). The
   unique key (account, uid, sequence, method, recipient, recurrence_id) means an
   intent is recorded once however often step 1 runs, and a ``sent`` row is never sent
   again.

   The crash window is between the SMTP server accepting a message and the ``sent``
   commit. A row found in ``sending`` at start is in that window or just before it:
   nobody can tell which (SMTP has no "did you get Message-ID X?"). We choose
   at-most-once: such a row becomes ``uncertain`` and is not sent again by itself, so a
   crash never makes an attendee receive an invitation twice (the failure users of
   other sync tools complain about most). ``followup-sync invitations resend ID``
   sends an uncertain row again on purpose; because the message is stored whole at
   step 1 (``messages``), with a Message-ID derived from the key
   (``<itip-<sha256(key)>@followup-sync>``) and the same DTSTAMP, that resend is the
   identical message: mail systems that de-duplicate by Message-ID drop it, and
   calendar clients see the same UID/SEQUENCE/DTSTAMP and change nothing.
3. **Replies** (``replies.fetch_replies``): iTIP REPLY messages read from an IMAP folder
   update the participant's status on the follow-up (the series, or one occurrence for a
   REPLY with RECURRENCE-ID). Unknown UID, an attendee who is not a participant, an
   occurrence the series does not have, or a SEQUENCE lower than the one last sent:
   reported and ignored. An answer the mail cannot be shown to come from (``From`` is
   not the attendee, or the receiving server's Authentication-Results fail it:
   ``sync.invitations.reply_trust``) is held until the operator accepts or rejects it.
   Handled messages are flagged \\Seen and skipped next time.

Who schedules (``Account.scheduling``; module ``scheduling``): ``email`` records and
sends as above, and our resource marks every ATTENDEE ``SCHEDULE-AGENT=CLIENT`` so a
scheduling server does not send a second copy; ``server`` records nothing and leaves the
ATTENDEEs unmarked, so an RFC 6638 server delivers (and PARTSTAT changes come back with
the normal pull); ``none`` sends nothing anywhere; ``auto`` asks the server once
(schedule-outbox-URL and a non-empty calendar-user-address-set on the principal:
``sync.stores.scheduling``) and picks ``server`` or ``email``. Never both. One
refinement (``channel``): a server that schedules only whole series (DAViCal,
``SERIES_ONLY_SCHEDULING``) gets no say over a follow-up with something per occurrence;
that follow-up is marked CLIENT and goes by email.

Who sends: ``followup-sync invitations send``, or the daemon right after each pass of
the account (``sync.service.daemon``), which also reads replies every ``poll_seconds``.

The modules, in the order of the steps: ``scheduling`` (who schedules), ``record``
(step 1; its tables and SQL are ``sync.state.invitation_records``), ``messages`` (the
iMIP mail), ``send`` (step 2), ``replies`` (step 3 and the listings), ``reply_trust``
(whether a reply's mail comes from the attendee). Callers import the module they need.
"""
