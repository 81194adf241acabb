"""Sending due steps: claim each send in the database, hand it to the mail server, record it.

At most once (SPEC §4, §6). Under the campaign's row lock (PostgreSQL) or SQLite's write lock,
today's count is checked against the quota, the lead is taken off the due list with a
conditional update, and a CLAIMED attempt is inserted, whose partial unique index makes a second
send of the same step to the same lead impossible. Only then is the mail handed over
(outreach.transport). What became of it decides the rest:

- sent → SENT, the lead moves on (CONTACTED or QUALIFIED, next step due after its delay);
- certainly not sent (connection lost before the message, our own error) → the claim is
  released: no attempt, no quota, the lead due as before;
- refused by the server, or a message that cannot be built → FAILED (no quota); a temporary
  refusal is retried later, a hard bounce suppresses the address, a broken message stops the lead;
- connection lost after the message was handed over → UNKNOWN: the lead is stopped for staff to
  resolve, and the campaign's outreach stops for this cycle (the relay is suspect).

With mailboxes (SPEC §8), the same claim also checks, under the mailbox's row lock, its cap
across all its campaigns (with warm-up), its gap and its send window in the lead's time zone; a
first email also makes sure the address is in no other campaign's sequence. A lead's first email
goes from the mailbox with the most room, its follow-ups from the thread's mailbox; every email
carries the footer and the one-click unsubscribe headers (outreach.unsubscribe).

Every write of a lead is under its row lock or conditional on what was read, and each change is
an event of the lead (leads.services).
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from email.utils import formataddr, make_msgid, parseaddr

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import DatabaseError, transaction

from campaigns.models import Campaign, MessageStep
from campaigns.services import campaign_pause, postal_address
from leads.models import Lead, LeadEvent
from leads.services import (
    DUE_STATUSES,
    Actor,
    lead_check_stop,
    lead_as_read,
    lead_qualifies,
    lead_write_if_unchanged,
)
from outreach.clients.webhook import webhook_post
from outreach.claims import (
    ALREADY_SENT,
    CONVERSATION_WAIT,
    ELSEWHERE,
    PAUSED,
    QUOTA_FULL,
    SUPPRESSED,
    TAKEN,
    attempt_claim,
    attempt_finish,
    attempt_record_unsendable,
    attempt_release,
)
from outreach.limits import (
    WAIT_CAP,
    WAIT_GAP,
    WAIT_MAILBOX,
    WAIT_WINDOW,
    WAIT_WORDS,
    WAITS,
    addresses_in_other_sequences,
    bounce_protection_reason,
    mailbox_room,
    mailbox_wait,
    quota_remaining,
    send_zone,
    window_next_open,
)
from outreach.mailboxes import mailbox_disable, mailbox_record_error
from outreach.messages import RenderError, campaign_steps, message_render
from outreach.models import Mailbox, OutreachAttempt, Suppression
from outreach.suppression import suppression_add, suppressed_emails
from outreach.transport import (
    RELEASED,
    LoginFailed,
    Mailer,
    MailServerDown,
    MessageProblem,
    message_prepare,
)
from outreach.unsubscribe import message_footer, unsubscribe_headers

logger = logging.getLogger(__name__)

Status = OutreachAttempt.Status
# Due leads read per cycle beyond the quota, to get past leads that turn out to need no email.
SKIP_ALLOWANCE = 200
PREVIEW_LIMIT = 100
# Sends released because the connection dropped before the message, in a row, before the
# phase gives up on the server for this cycle.
MAX_RELEASED_IN_A_ROW = 2
# What happened to one due lead, besides the attempt statuses and the claim's answers.
QUALIFIED = "qualified"  # a send (or, in a dry run, a would-be send) that qualified its lead
STOPPED = "stopped"


def sender_identity(campaign: Campaign) -> tuple[str, str]:
    """The name and address a campaign without mailboxes sends as: its own, else DEFAULT_FROM_EMAIL's."""
    default_name, default_email = parseaddr(settings.DEFAULT_FROM_EMAIL)
    return campaign.sender_name or default_name, campaign.sender_email or default_email


def sender_address(campaign: Campaign) -> str:
    return formataddr(sender_identity(campaign))


@dataclass(frozen=True)
class CycleStop:
    """Why a running cycle must stop before its next phase or send: its lease was taken over
    (an error: exit 3), or its campaign was switched off live (a note)."""

    reason: str
    error: bool = False


def _record_stop(lead: Lead, campaign: Campaign, reason: str, now: datetime, read: dict, actor: Actor) -> bool:
    """Save a stopped lead (stopped or LOST by lead_check_stop), unless it changed since it
    was read (`read`, lead_as_read before the stop; e.g. a reply came in).

    A lead stopped for who it is (do_not_contact, suppressed), not for its silence, gets a
    skipped attempt so the history shows why it got no email.
    """
    with transaction.atomic():
        stopped = lead_write_if_unchanged(
            lead=lead, now=now, expect=read,
            changes={"status": lead.status, "next_action_at": None, "stopped_reason": lead.stopped_reason},
            event={"kind": LeadEvent.Kind.STOPPED, "actor": actor, "from_status": read["status"],
                   "to_status": lead.status, "reason": reason},
        )
        if not stopped:
            return False
        attempt = None
        if lead.status != Lead.Status.LOST:
            attempt = OutreachAttempt.objects.create(
                campaign=campaign, lead=lead, step=read["attempt_count"] + 1, status=Status.SKIPPED,
                error=reason, created_at=now, finished_at=now,
            )
    if attempt:
        webhook_post(_event(attempt, lead, campaign))
    return True


def _thread_headers(lead: Lead, message_id: str) -> dict[str, str]:
    """Follow-ups reply to the earlier emails, so they land in the same thread."""
    headers = {"Message-ID": message_id}
    earlier = list(
        OutreachAttempt.objects.filter(lead=lead, status=Status.SENT).order_by("step").values_list("message_id", flat=True)
    )
    earlier = [m for m in earlier if m]
    if earlier:
        headers["In-Reply-To"] = earlier[-1]
        headers["References"] = " ".join(earlier)
    return headers


def _event(attempt: OutreachAttempt, lead: Lead, campaign: Campaign) -> dict:
    return {
        "event": f"outreach.{attempt.status}",
        "campaign_id": campaign.pk,
        "campaign_name": campaign.name,
        "lead_id": lead.pk,
        "email": lead.email,
        "lead_status": lead.status,
        "step": attempt.step,
        "status": attempt.status,
        "subject": attempt.subject,
        "message_id": attempt.message_id,
        "error": attempt.error,
        "created_at": attempt.created_at,
    }


# --- a run over the due leads ---------------------------------------------------------------------


@dataclass
class OutreachResult:
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    lost: int = 0
    released: int = 0
    # Due leads whose mail waits for a mailbox (window, gap, cap, mailbox off), by reason;
    # counted in `skipped` too.
    waiting: dict[str, int] = field(default_factory=dict)
    # The soonest a window closed for a waiting lead opens again.
    window_opens: datetime | None = None
    # The phase ended early for a reason cron should hear about (server down, unknown send,
    # database error).
    stopped: bool = False
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    previews: list[dict] = field(default_factory=list)

    @property
    def waiting_total(self) -> int:
        return sum(self.waiting.values())


class _StopPhase(Exception):
    """Outreach of this campaign ends for this cycle; the message says why. `handled`: the
    lead being sent was dealt with (it does not wait for the next cycle)."""

    def __init__(self, message: str, *, handled: bool = False):
        super().__init__(message)
        self.handled = handled


def live_sending_refusal(campaign: Campaign) -> str | None:
    """Why the campaign may not send real email now, or None (SPEC §8: no postal address)."""
    if not postal_address(campaign):
        return ("live sending refused: the campaign has no postal address for the footer its emails must carry; "
                "set its postal_address or CAM_POSTAL_ADDRESS")
    return None


def outreach_send_due(
    *, campaign: Campaign, now: datetime, dry_run: bool = True, qualified_needed: int | None = None,
    deadline: float | None = None, actor: Actor | None = None, stop_check: Callable[[], CycleStop | None] | None = None,
) -> OutreachResult:
    """Email the campaign's due leads, highest score first, strictly within today's quota and
    what its mailboxes allow now (caps, gaps, windows); the rest waits for the send task.

    Dry run renders and counts what would be sent, and changes nothing: no mail, no attempt,
    no quota, no lead. Leads that must get no more email are stopped (LOST after all attempts
    or 30 days of silence; skipped when do_not_contact or suppressed). Live sending is refused
    without a postal address. Outreach stops once `qualified_needed` more leads became
    QUALIFIED (the goal is met), when the environment's mail server is down (a mailbox that is
    down or refuses its login only stops that mailbox), after a send whose outcome is unknown,
    when bounce protection pauses the campaign, and at `deadline` (time.monotonic()): what it
    did not reach waits for the next run.
    """
    result = OutreachResult()
    if not campaign.email_enabled:
        result.notes.append("email channel not enabled: no outreach")
        return result
    due = Lead.objects.filter(campaign=campaign, status__in=DUE_STATUSES, next_action_at__lte=now)
    due_total = due.count()
    if not due_total:
        return result
    if not dry_run and (refusal := live_sending_refusal(campaign) or _bounce_pause(campaign, now)):
        result.skipped = due_total
        result.stopped = True
        result.errors.append(refusal)
        return result
    remaining = quota_remaining(campaign=campaign, now=now)
    if remaining == 0:
        result.skipped = due_total
        result.notes.append(f"daily quota of {campaign.max_emails_per_day} already used")
        return result

    run = _Run(campaign=campaign, now=now, dry_run=dry_run, steps=campaign_steps(campaign), result=result,
               actor=actor or Actor.cycle(campaign), deadline=deadline)
    stop_check = stop_check or (lambda: None)
    candidates = list(due.order_by("-score", "next_action_at", "id")[: remaining + SKIP_ALLOWANCE])
    run.suppressed = suppressed_emails([lead.email for lead in candidates])
    run.threads = thread_mailboxes([lead.pk for lead in candidates if lead.attempt_count])
    if dry_run:  # a live run asks the claim, which holds the addresses' rows
        run.busy_elsewhere = addresses_in_other_sequences(
            campaign=campaign, emails=[lead.email for lead in candidates if not lead.attempt_count])
    handled = 0
    try:
        run.open_senders()
        for lead in candidates:
            if remaining <= 0:
                break
            if qualified_needed is not None and qualified_needed <= 0:
                result.notes.append("the goal would be met by this cycle: no more outreach" if dry_run
                                    else "goal met by this cycle: no more outreach")
                break
            if run.out_of_time():
                result.notes.append(f"cycle budget of {settings.CAM_CYCLE_BUDGET_SECONDS} s used up: "
                                    "the other due leads wait for the next cycle")
                break
            if stop := stop_check():  # the lease lost, or the campaign switched off live
                (result.errors if stop.error else result.notes).append(stop.reason)
                result.stopped = result.stopped or stop.error
                break
            outcome = run.one(lead)
            if outcome in (QUOTA_FULL, PAUSED):
                result.notes.append("campaign was paused during the cycle" if outcome == PAUSED
                                    else f"daily quota of {campaign.max_emails_per_day} reached")
                break
            if outcome in WAITS:
                result.waiting[outcome] = result.waiting.get(outcome, 0) + 1
            elif outcome not in (TAKEN, RELEASED):
                handled += 1
            if outcome in (Status.SENT, Status.UNKNOWN, QUALIFIED):
                remaining -= 1
            if outcome == QUALIFIED and qualified_needed is not None:
                qualified_needed -= 1
    except (MailServerDown, _StopPhase) as exc:
        result.stopped = True
        handled += getattr(exc, "handled", False)
        text = f"mail server unavailable, nothing more sent: {exc}" if isinstance(exc, MailServerDown) else str(exc)
        result.errors.append(text)
    except DatabaseError as exc:
        logger.exception("outreach stopped by the database for campaign %s", campaign.pk)
        result.stopped = True
        result.errors.append(f"outreach stopped, database error: {type(exc).__name__}: {exc}")
    except Exception as exc:  # counts so far stay in the result; the cycle reports the error
        logger.exception("outreach failed for campaign %s", campaign.pk)
        result.stopped = True
        result.errors.append(f"outreach: {type(exc).__name__}: {exc}")
    finally:
        run.close()
    # Due leads this cycle did not reach wait for the next one (quota, goal, budget, server down).
    result.skipped += due_total - handled
    if result.waiting:
        words = ", ".join(f"{count} {WAIT_WORDS[reason]}" for reason, count in result.waiting.items())
        opens = ""
        if result.window_opens and WAIT_WINDOW in result.waiting:
            opens = f" (the first window opens {result.window_opens.astimezone(dt_timezone.utc):%Y-%m-%d %H:%M} UTC)"
        result.notes.append(f"{result.waiting_total} due lead(s) wait for their mailbox: {words}{opens}; "
                            "the send task sends them once allowed")
    return result


def thread_mailboxes(lead_ids: list[int]) -> dict[int, int | None]:
    """Each lead's thread: the mailbox its first email sent went through (None: the environment's
    server), for the leads that have one; one query for the run."""
    threads: dict[int, int | None] = {}
    rows = (OutreachAttempt.objects.filter(lead_id__in=lead_ids, status=Status.SENT)
            .order_by("lead_id", "step", "id").values_list("lead_id", "mailbox_id"))
    for lead_id, mailbox_id in rows:
        threads.setdefault(lead_id, mailbox_id)
    return threads


def _bounce_pause(campaign: Campaign, now: datetime) -> str | None:
    """Pause the campaign if its bounces call for it (bounce protection); the reason, or None."""
    reason = bounce_protection_reason(campaign=campaign)
    if reason:
        campaign_pause(campaign=campaign, reason=reason, now=now)
        logger.warning("campaign %s paused: %s", campaign.pk, reason)
    return reason


@dataclass
class _Sender:
    """Where a run's mail goes out: a mailbox (None: the environment's EMAIL_* settings), its
    connection, and what the run knows of its limits. A mailbox that is down, refuses its
    login or has a From address no message can carry is `blocked` for the rest of the run."""

    mailbox: Mailbox | None
    mailer: Mailer
    from_email: str
    from_name: str
    room: int | None = None  # sends left today; None: no cap (the environment)
    blocked: str = ""
    released_in_a_row: int = 0

    @property
    def address(self) -> str:
        return formataddr((self.from_name, self.from_email))

    @property
    def label(self) -> str:
        return f"mailbox {self.mailbox.name}" if self.mailbox else "the mail server"


@dataclass
class _Run:
    """One outreach pass over a campaign's due leads."""

    campaign: Campaign
    now: datetime
    dry_run: bool
    steps: list[MessageStep]
    result: OutreachResult
    actor: Actor
    deadline: float | None = None
    suppressed: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    # Senders by mailbox id (None: the environment), made when first needed.
    senders: dict[int | None, _Sender] = field(default_factory=dict)
    # The campaign's mailboxes for first emails (active ones), and whether it has any at all.
    first_touch: list[int] = field(default_factory=list)
    has_mailboxes: bool = False
    postal: str = ""
    # The mailbox each contacted lead's thread went out from (its first email sent; None: the
    # environment's server), and the addresses in another campaign's sequence (for dry runs).
    threads: dict[int, int | None] = field(default_factory=dict)
    busy_elsewhere: set[str] = field(default_factory=set)

    def out_of_time(self) -> bool:
        """No send starts after the deadline; one started before it has its whole time limit
        (cutting a healthy but slow server short would make its send unknown)."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def clock(self) -> datetime:
        """Now, as the cycle's `now` moved on: a claim is dated when it is made (its quota day
        too), not when the cycle started, minutes earlier perhaps, before midnight."""
        return self.now + timedelta(seconds=int(time.monotonic() - self.started))  # whole seconds

    def open_senders(self) -> None:
        """The campaign's mailboxes as they are now. Without any, the environment's server, whose
        From address is checked before any claim: it is the campaign's problem, not one lead's."""
        self.postal = postal_address(self.campaign)
        boxes = list(self.campaign.mailboxes.order_by("id"))
        self.has_mailboxes = bool(boxes)
        for box in boxes:
            self.senders[box.pk] = self._sender(box)
        self.first_touch = [box.pk for box in boxes if box.active]
        if not self.has_mailboxes and not self.dry_run:
            sender = self.sender(None)
            if sender.blocked:
                raise _StopPhase(f"the campaign's sender cannot be used, nothing sent: {sender.blocked}")

    def close(self) -> None:
        for sender in self.senders.values():
            sender.mailer.close()

    def _sender(self, box: Mailbox | None) -> _Sender:
        mailer = Mailer(send_seconds=settings.CAM_SEND_TIMEOUT_SECONDS, mailbox=box)
        if box is None:
            name, email = sender_identity(self.campaign)
            sender = _Sender(mailbox=None, mailer=mailer, from_email=email, from_name=name)
        else:
            sender = _Sender(mailbox=box, mailer=mailer, from_email=box.from_email,
                             from_name=box.from_name or self.campaign.sender_name,
                             room=mailbox_room(mailbox=box, now=self.now))
            if not box.active:
                sender.blocked = f"switched off{': ' + box.last_error if box.last_error else ''}"
        if not sender.blocked:
            try:
                message_prepare(EmailMessage(subject="check", body="", from_email=sender.address,
                                             to=["check@example.com"]))
            except MessageProblem as exc:
                sender.blocked = str(exc)
                if box is not None:
                    self.result.errors.append(f"{sender.label}: its From address cannot be used: {exc}")
        return sender

    def sender(self, mailbox_id: int | None) -> _Sender:
        if mailbox_id not in self.senders:
            box = Mailbox.objects.filter(pk=mailbox_id).first() if mailbox_id is not None else None
            self.senders[mailbox_id] = self._sender(box)
        return self.senders[mailbox_id]

    def _limit(self, sender: _Sender, lead: Lead) -> str | None:
        """Why `sender` cannot take this lead's mail now, or None."""
        if sender.blocked:
            return WAIT_MAILBOX
        if sender.mailbox is None:
            return None
        zone = send_zone(lead=lead, campaign=self.campaign, mailbox=sender.mailbox)
        wait = mailbox_wait(mailbox=sender.mailbox, room=sender.room, at=self.clock(), zone=zone)
        if wait == WAIT_WINDOW:
            opens = window_next_open(mailbox=sender.mailbox, at=self.clock(), zone=zone)
            if opens and (self.result.window_opens is None or opens < self.result.window_opens):
                self.result.window_opens = opens
        return wait

    def pick(self, lead: Lead) -> _Sender | str:
        """The lead's sender, or why its mail waits. Follow-ups go from the mailbox of the
        thread (the first email sent), never silently from another; a first email from the
        campaign's mailbox with the most room today, or the environment's server without any."""
        if lead.pk in self.threads:
            sender = self.sender(self.threads[lead.pk])
            return self._limit(sender, lead) or sender
        if not self.has_mailboxes:
            return self.sender(None)
        waits, open_ = [], []
        for mailbox_id in self.first_touch:
            sender = self.senders[mailbox_id]
            wait = self._limit(sender, lead)
            (waits.append(wait) if wait else open_.append(sender))
        if open_:
            return max(open_, key=lambda s: (s.room, -s.mailbox.pk))
        # Why it waits: the reason that will pass first.
        for reason in (WAIT_WINDOW, WAIT_GAP, WAIT_CAP):
            if reason in waits:
                return reason
        return WAIT_MAILBOX

    def one(self, lead: Lead) -> str:
        """Handle one due lead; return what happened to it."""
        result = self.result
        read = lead_as_read(lead)
        reason = lead_check_stop(
            lead=lead, campaign=self.campaign, now=self.now, suppressed=lead.email in self.suppressed,
            steps=len(self.steps),
        )
        if reason:
            if self.dry_run or _record_stop(lead, self.campaign, reason, self.now, read, self.actor):
                if lead.status == Lead.Status.LOST:
                    result.lost += 1
                else:
                    result.skipped += 1
            return STOPPED
        sender = self.pick(lead)
        if isinstance(sender, str):
            return sender
        step = self.steps[lead.attempt_count]
        try:
            message = message_render(step, lead, self.campaign)
        except RenderError as exc:
            result.skipped += 1
            result.errors.append(f"{lead.email}: {exc}")
            return Status.SKIPPED
        if not self.dry_run:
            # A first email whose mailbox turns out to be down goes from the next one with room.
            for _ in range(len(self.senders) + 1):
                outcome = self._send(lead, step, message.subject, self._body(message, sender, lead), sender)
                if outcome != WAIT_MAILBOX or lead.attempt_count or not sender.blocked:
                    return outcome
                sender = self.pick(lead)
                if isinstance(sender, str):
                    return sender
            return WAIT_MAILBOX
        body = self._body(message, sender, lead)
        if lead.attempt_count == 0 and lead.email in self.busy_elsewhere:
            result.skipped += 1
            return ELSEWHERE
        result.sent += 1
        if sender.mailbox is not None:  # as the claim would: one less today, and the gap (without jitter)
            sender.room -= 1
            sender.mailbox.next_send_at = self.clock() + timedelta(seconds=sender.mailbox.min_gap_seconds)
        if len(result.previews) < PREVIEW_LIMIT:
            result.previews.append({
                "lead_id": lead.pk, "email": lead.email, "step": step.position,
                "subject": message.subject, "body": body,
                "mailbox": sender.mailbox.name if sender.mailbox else None,
            })
        return QUALIFIED if lead_qualifies(lead=lead, campaign=self.campaign) else Status.SENT

    def _body(self, message, sender: _Sender, lead: Lead) -> str:
        return message.body + message_footer(sender_name=sender.from_name, sender_email=sender.from_email,
                                             postal_address=self.postal, email=lead.email)

    def _sender_down(self, sender: _Sender, exc: MailServerDown) -> str:
        """A mailbox that cannot send: off for good when its login is refused (staff fix it and
        switch it on), off for this run when its server does not answer. The environment's
        server down stops the phase, as there is no other."""
        if sender.mailbox is None:
            raise exc
        if isinstance(exc, LoginFailed):
            mailbox_disable(mailbox=sender.mailbox, reason=str(exc), now=self.now)
            self.result.errors.append(f"{sender.label} switched off: {exc}")
        else:
            mailbox_record_error(mailbox=sender.mailbox, error=f"{self.now:%Y-%m-%d %H:%M} {exc}")
            self.result.errors.append(f"{sender.label} unavailable, its mail waits: {exc}")
        sender.blocked = str(exc)
        sender.mailer.close()
        return WAIT_MAILBOX

    def _send(self, lead: Lead, step: MessageStep, subject: str, body: str, sender: _Sender) -> str:
        campaign, now, result = self.campaign, self.now, self.result
        try:
            sender.mailer.ready()  # before the claim: a server that is down must not use up leads
        except MailServerDown as exc:
            return self._sender_down(sender, exc)
        message_id = make_msgid(domain=sender.from_email.rpartition("@")[2] or "localhost")
        headers = _thread_headers(lead, message_id) | unsubscribe_headers(email=lead.email, sender_email=sender.from_email)
        email = EmailMessage(subject=subject, body=body, from_email=sender.address, to=[lead.email], headers=headers)
        try:
            prepared = message_prepare(email)
        except MessageProblem as exc:
            attempt = attempt_record_unsendable(
                campaign=campaign, lead=lead, step=step.position, subject=subject, body=body,
                error=str(exc), now=now, actor=self.actor,
            )
            if attempt is None:
                return TAKEN
            result.failed += 1
            result.errors.append(f"{lead.email}: step {step.position} not sent: {exc}")
            webhook_post(_event(attempt, lead, campaign))
            return Status.FAILED
        attempt = attempt_claim(
            campaign=campaign, lead=lead, step=step.position, subject=subject, body=body,
            message_id=message_id, now=self.clock(), mailbox=sender.mailbox,
        )
        if attempt == ALREADY_SENT:
            stopped = lead_write_if_unchanged(
                lead=lead, now=now, expect=lead_as_read(lead),
                changes={"next_action_at": None,
                         "stopped_reason": f"step {step.position} was already sent or claimed: check its attempts"},
                event={"kind": LeadEvent.Kind.STOPPED, "actor": self.actor, "from_status": lead.status,
                       "reason": f"step {step.position} was already sent or claimed"},
            )
            if stopped:
                result.notes.append(f"{lead.email}: step {step.position} was already sent or claimed; lead stopped")
            return ALREADY_SENT
        if attempt in WAITS:
            self._refresh(sender)  # another process used the mailbox meanwhile
            return attempt
        if attempt in (SUPPRESSED, ELSEWHERE):
            result.skipped += 1
            if attempt == ELSEWHERE:
                result.notes.append(f"{lead.email}: not started, the address is in another campaign's sequence; "
                                    f"looked at again in {CONVERSATION_WAIT.days} day")
            return attempt
        if not isinstance(attempt, OutreachAttempt):
            return attempt
        if sender.mailbox is not None:  # the claim used one of its sends today and set its gap
            sender.room -= 1
            sender.mailbox = attempt.mailbox
        try:
            sent = sender.mailer.send(prepared)
        except MailServerDown as exc:
            attempt_release(attempt=attempt, lead=lead, now=now)
            self._unspend(sender)
            return self._sender_down(sender, exc)
        if sent.status == RELEASED:
            attempt_release(attempt=attempt, lead=lead, now=now)
            self._unspend(sender)
            logger.warning("step %s to lead %s released: %s", step.position, lead.pk, sent.error)
            result.released += 1
            result.notes.append(f"{lead.email}: step {step.position} not sent ({sent.error}); it stays due")
            sender.released_in_a_row += 1
            if sender.released_in_a_row >= MAX_RELEASED_IN_A_ROW:
                problem = (f"{sender.label} dropped the connection before {sender.released_in_a_row} "
                           "messages in a row: nothing more sent through it this cycle")
                if sender.mailbox is None:
                    raise _StopPhase(problem)
                sender.blocked = problem
                result.errors.append(problem)
            return RELEASED
        sender.released_in_a_row = 0
        if sent.error:
            logger.warning("sending step %s to lead %s: %s: %s", step.position, lead.pk, sent.status, sent.error)
        finished = attempt_finish(attempt=attempt, campaign=campaign, outcome=sent, now=now, steps=self.steps,
                                  actor=self.actor)
        lead = finished or lead
        if sent.status != Status.SENT and sent.status != Status.UNKNOWN:
            self._unspend(sender)  # refused: no quota, no cap (the gap still passes)
        if sent.hard_bounce:
            suppression_add(email=lead.email, reason=Suppression.Reason.BOUNCED, note=sent.error[:300], now=now,
                            actor=self.actor)
        webhook_post(_event(attempt, lead, campaign))
        if sent.hard_bounce and (reason := _bounce_pause(campaign, now)):
            result.failed += 1
            raise _StopPhase(f"campaign paused: {reason}", handled=True)
        if sent.status == Status.SENT:
            result.sent += 1
            return QUALIFIED if lead.status == Lead.Status.QUALIFIED else Status.SENT
        if sent.status == Status.UNKNOWN:
            result.unknown += 1
            raise _StopPhase(f"{lead.email}: the connection was lost after step {step.position} was handed over, "
                             "so it may have been delivered; the send is left for staff to resolve and outreach "
                             "stops for this cycle", handled=True)
        result.failed += 1
        return Status.FAILED

    def _unspend(self, sender: _Sender) -> None:
        """A claim undone (or refused by the server): it used none of the mailbox's cap."""
        if sender.room is not None:
            sender.room += 1

    def _refresh(self, sender: _Sender) -> None:
        """The mailbox as another process left it (its gap, its count today)."""
        if sender.mailbox is not None:
            box = Mailbox.objects.filter(pk=sender.mailbox.pk).first()
            if box is None or not box.active:
                sender.blocked = "switched off"
                return
            sender.mailbox, sender.room = box, mailbox_room(mailbox=box, now=self.clock())
