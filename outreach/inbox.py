"""Reading the mailboxes (SPEC §9): every mailbox with IMAP settings is read for what came back
since the last read, and interrupted sends are looked up in its Sent folder.

- Only new messages: the folder's UIDVALIDITY and the last UID read are kept (InboxState); a new
  UIDVALIDITY (the server renumbered the folder) reads it again from the mailbox's start in CAM,
  and a message already stored is recognised by its Message-ID.
- Nothing is marked read: the folder is opened read-only (EXAMINE) and fetched with BODY.PEEK.
- A mailbox's first read starts the day before it was added to CAM, not at the beginning of
  its history, so years of old mail are not taken for answers.
- Each message is stored and acted on once (outreach.replies.inbound_store): two readers at once
  apply it once.
- A login or network failure is the mailbox's last error; the other mailboxes are read.
"""

import imaplib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone
from imap_tools import AND, H, BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted, MailMessage
from imap_tools.errors import MailboxLoginError

from campaigns.services import Refused
from leads.services import Actor
from outreach.attention import attempt_resolve, in_flight_window
from outreach.inbound import Parsed, message_parse
from outreach.mailboxes import mailbox_record_error
from outreach.models import InboundMessage, InboxState, Mailbox, OutreachAttempt
from outreach.replies import inbound_store
from outreach.transport import LoginFailed, MailServerDown, mailbox_secret

logger = logging.getLogger(__name__)

IMAP_SECONDS = 30  # a server that does not answer within this is down for this read
BATCH = 500  # messages read per folder and read; the rest wait for the next read
FETCH_BULK = 25  # messages per FETCH command
MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # bigger messages are stored unread (a reply is small)
RECONCILE_BATCH = 100


class _RawMessage(MailMessage):
    """imap-tools' message, keeping the bytes the server sent (parsed by outreach.inbound)."""

    def __init__(self, fetch_data: list) -> None:
        super().__init__(fetch_data)
        self.raw = self._get_message_data_parts(fetch_data)[0]


def imap_open(mailbox: Mailbox, *, timeout: float = IMAP_SECONDS) -> BaseMailBox:
    """A logged-in imap-tools client for the mailbox. LoginFailed: the login (or the stored
    password) is refused; MailServerDown: the server cannot be reached."""
    kind = {Mailbox.Security.SSL: MailBox, Mailbox.Security.STARTTLS: MailBoxStartTls}.get(
        mailbox.imap_security, MailBoxUnencrypted)
    password = mailbox_secret(mailbox, "imap_password")
    where = f"{mailbox.imap_host}:{mailbox.imap_port}"
    try:
        client = kind(mailbox.imap_host, mailbox.imap_port, timeout=timeout)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailServerDown(f"cannot connect to {where}: {_describe(exc)}") from exc
    client.email_message_class = _RawMessage
    try:
        client.login(mailbox.imap_username, password)
    except MailboxLoginError as exc:
        imap_close(client)
        raise LoginFailed(f"authentication failed on {where} for {mailbox.imap_username}") from exc
    except (OSError, imaplib.IMAP4.error) as exc:
        imap_close(client)
        raise MailServerDown(f"{where} failed while logging in: {_describe(exc)}") from exc
    return client


def imap_close(client: BaseMailBox) -> None:
    try:
        if client.login_result is None:
            client.client.shutdown()
        else:
            client.logout()
    except (OSError, imaplib.IMAP4.error, AttributeError) as exc:  # already gone: nothing to close
        logger.debug("closing an IMAP connection: %s", _describe(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


@dataclass
class PollResult:
    mailbox: str
    read: int = 0  # new messages fetched
    stored: int = 0  # stored and acted on by this reader
    already: int = 0  # stored by another reader, or before a UIDVALIDITY change
    kinds: Counter = field(default_factory=Counter)
    matched: int = 0
    reconciled_sent: int = 0  # interrupted sends found in the Sent folder
    not_in_sent: int = 0
    more: bool = False  # more new messages than one read takes
    error: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"mailbox": self.mailbox, "read": self.read, "stored": self.stored, "already": self.already,
                "kinds": dict(self.kinds), "matched": self.matched, "reconciled_sent": self.reconciled_sent,
                "not_in_sent": self.not_in_sent, "more": self.more, "error": self.error,
                "seconds": round(self.seconds, 3)}


def inbox_mailboxes():
    """The mailboxes read for replies: every one with IMAP settings, on or off (a mailbox
    switched off for sending still receives answers)."""
    return Mailbox.objects.exclude(imap_host="").exclude(imap_username="").order_by("pk")


def inbox_poll_all(*, now_fn=None, mailbox_ids: list[int] | None = None) -> list[PollResult]:
    mailboxes = inbox_mailboxes()
    if mailbox_ids:
        mailboxes = mailboxes.filter(pk__in=mailbox_ids)
    return [inbox_poll(mailbox=mailbox, now_fn=now_fn) for mailbox in mailboxes]


def inbox_poll(*, mailbox: Mailbox, now_fn=None) -> PollResult:
    """Read the mailbox's inbox for new messages and act on them, then reconcile its interrupted
    sends with its Sent folder. Never raises for the server's failures: they are the result's
    error and the mailbox's last error."""
    now_fn = now_fn or timezone.now
    result = PollResult(mailbox=str(mailbox))
    started = time.monotonic()
    try:
        client = imap_open(mailbox)
    except MailServerDown as exc:
        result.error = f"IMAP: {exc}"
        mailbox_record_error(mailbox=mailbox, error=result.error)
        result.seconds = time.monotonic() - started
        return result
    try:
        _read_folder(client, mailbox, mailbox.imap_inbox, now_fn, result)
        _reconcile(client, mailbox, now_fn, result)
    except (OSError, imaplib.IMAP4.error) as exc:
        result.error = f"IMAP: {mailbox.imap_host} failed while reading: {_describe(exc)}"
        mailbox_record_error(mailbox=mailbox, error=result.error)
    except Exception as exc:  # noqa: BLE001 — the other mailboxes are read all the same
        logger.exception("reading mailbox %s", mailbox.pk)
        result.error = f"reading stopped: {_describe(exc)}"
        mailbox_record_error(mailbox=mailbox, error=result.error)
    finally:
        imap_close(client)
        result.seconds = time.monotonic() - started
    return result


def _read_folder(client: BaseMailBox, mailbox: Mailbox, folder: str, now_fn, result: PollResult) -> None:
    client.folder.set(folder, readonly=True)  # EXAMINE: nothing in it can be flagged
    uidvalidity = int(client.folder.status(folder, ["UIDVALIDITY"])["UIDVALIDITY"])
    state, _ = InboxState.objects.get_or_create(mailbox=mailbox, folder=folder)
    renumbered = state.uidvalidity is not None and state.uidvalidity != uidvalidity
    last_uid = 0 if renumbered or state.uidvalidity is None else state.last_uid
    criteria = AND(uid=f"{last_uid + 1}:*")
    if last_uid == 0:  # a first read, or the folder renumbered: from the day before the mailbox came to CAM
        criteria = AND(uid=f"{last_uid + 1}:*", date_gte=(mailbox.created_at - timedelta(days=1)).date())
    # "n:*" always names the last message, even when it is older than n: keep the new ones only.
    uids = sorted(int(uid) for uid in client.uids(criteria) if int(uid) > last_uid)
    result.more = len(uids) > BATCH
    uids = uids[:BATCH]
    if renumbered:
        logger.warning("mailbox %s: %s was renumbered (UIDVALIDITY %s → %s): read again", mailbox.pk, folder,
                       state.uidvalidity, uidvalidity)
    known_ids = set()
    if renumbered:
        known_ids = set(InboundMessage.objects.filter(mailbox=mailbox, folder=folder).exclude(message_id="")
                        .values_list("message_id", flat=True))
    highest = last_uid
    for item in client.fetch(uid_list=[str(uid) for uid in uids], mark_seen=False, bulk=FETCH_BULK) if uids else ():
        uid = int(item.uid)
        result.read += 1
        parsed = _parse(item.raw)
        if parsed.message_id and parsed.message_id in known_ids:
            result.already += 1
        else:
            stored = _store(parsed, mailbox, folder, uidvalidity, uid, now_fn())
            if stored is None:
                result.already += 1
            else:
                result.stored += 1
                result.kinds[stored.kind] += 1
                result.matched += bool(stored.matched_by)
        highest = max(highest, uid)
    _advance(state, uidvalidity, highest, renumbered, now_fn())


def _store(parsed: Parsed, mailbox: Mailbox, folder: str, uidvalidity: int, uid: int, now: datetime):
    """inbound_store; if acting on the message fails (a bug, or data the database refuses), the
    message is kept unmatched and not acted on, with the error for staff, so one bad message never
    blocks the mailbox's next ones."""
    try:
        return inbound_store(parsed=parsed, now=now, mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, uid=uid)
    except Exception as exc:  # noqa: BLE001 — kept with the error, rather than lost or retried forever
        logger.exception("mailbox %s: message uid %s could not be acted on", mailbox.pk, uid)
        kept = Parsed(kind=parsed.kind, message_id=parsed.message_id[:300], from_email=parsed.from_email[:254],
                      subject=parsed.subject[:300], sent_at=parsed.sent_at,
                      evidence={"error": f"could not be acted on: {_describe(exc)}"})
        return inbound_store(parsed=kept, now=now, mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, uid=uid,
                             act=False)


def _parse(raw: bytes) -> Parsed:
    """The parsed message; one too big, or that the parser cannot read, is kept as an
    unmatched reply with the reason, for staff to see, rather than lost."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return Parsed(subject="(not read)", evidence={"error": f"{len(raw):,} bytes: too big to read"})
    try:
        return message_parse(raw)
    except Exception as exc:  # noqa: BLE001 — a message no parser could read is kept, with why
        logger.warning("an inbound message could not be parsed: %s", _describe(exc))
        return Parsed(subject="(not read)", evidence={"error": f"could not be parsed: {_describe(exc)}"})


def _advance(state: InboxState, uidvalidity: int, highest: int, renumbered: bool, now: datetime) -> None:
    """Remember where this read stopped; never back (a slower reader finishing after a faster one)."""
    rows = InboxState.objects.filter(pk=state.pk)
    if renumbered or state.uidvalidity is None:
        rows.filter(Q(uidvalidity__isnull=True) | ~Q(uidvalidity=uidvalidity)).update(
            uidvalidity=uidvalidity, last_uid=highest, polled_at=now)
    rows.filter(uidvalidity=uidvalidity, last_uid__lt=highest).update(last_uid=highest)
    rows.update(polled_at=now)


# --- interrupted sends and the Sent folder --------------------------------------------------------


def _reconcile(client: BaseMailBox, mailbox: Mailbox, now_fn, result: PollResult) -> None:
    """Sends left claimed (past any send still in progress) or unknown are looked up in the
    Sent folder by their Message-ID: found, the send is resolved as sent and the lead moves on;
    not found, it is left for staff with that noted."""
    now = now_fn()
    attempts = list(
        OutreachAttempt.objects.filter(mailbox=mailbox).exclude(message_id="")
        .filter(Q(status=OutreachAttempt.Status.UNKNOWN)
                | Q(status=OutreachAttempt.Status.CLAIMED, created_at__lt=now - in_flight_window()))
        .order_by("created_at", "id")[:RECONCILE_BATCH]
    )
    if not attempts or not mailbox.imap_sent:
        return
    if not client.folder.exists(mailbox.imap_sent):
        result.error = f"IMAP: no folder named {mailbox.imap_sent!r} to look for interrupted sends in"
        return
    client.folder.set(mailbox.imap_sent, readonly=True)
    actor = Actor(f"Sent folder of mailbox {mailbox.name}")
    for attempt in attempts:
        if client.uids(AND(header=H("Message-ID", attempt.message_id))):
            try:
                attempt_resolve(attempt=attempt, outcome=OutreachAttempt.Resolution.SENT, actor=actor, now=now_fn())
            except Refused as exc:  # resolved by staff meanwhile
                logger.info("attempt %s found in Sent but not resolved: %s", attempt.pk, exc)
                continue
            result.reconciled_sent += 1
            continue
        result.not_in_sent += 1
        note = f"not found in the Sent folder of {mailbox.name}"
        if note not in attempt.error:
            OutreachAttempt.objects.filter(pk=attempt.pk).update(
                error=f"{attempt.error}\n{note} ({now:%Y-%m-%d %H:%M} UTC)".strip()[:2000])
