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

Every write of a lead is under its row lock or conditional on what was read, and each change is
an event of the lead (leads.services).
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import formataddr, make_msgid, parseaddr

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import DatabaseError, IntegrityError, transaction

from campaigns.models import Campaign, MessageStep
from leads.models import Lead, LeadEvent
from leads.services import (
    DUE_STATUSES,
    Actor,
    lead_check_stop,
    lead_event,
    lead_as_read,
    lead_locked,
    lead_qualifies,
    lead_record_send,
    lead_record_send_failure,
    lead_write_if_unchanged,
    sending_reason,
)
from outreach.clients.webhook import webhook_post
from outreach.limits import quota_remaining, quota_used
from outreach.messages import RenderError, campaign_steps, message_render
from outreach.models import OutreachAttempt, Suppression
from outreach.suppression import suppression_add, suppressed_emails
from outreach.transport import RELEASED, Mailer, MailServerDown, MessageProblem, SendOutcome, message_prepare

logger = logging.getLogger(__name__)

Status = OutreachAttempt.Status
# Due leads read per cycle beyond the quota, to get past leads that turn out to need no email.
SKIP_ALLOWANCE = 200
PREVIEW_LIMIT = 100
# Sends released because the connection dropped before the message, in a row, before the
# phase gives up on the server for this cycle.
MAX_RELEASED_IN_A_ROW = 2

# What happened to one due lead, besides the attempt statuses.
QUOTA_FULL = "quota_full"
TAKEN = "taken"  # another worker claimed it first
PAUSED = "paused"
ALREADY_SENT = "already_sent"
QUALIFIED = "qualified"  # a send (or, in a dry run, a would-be send) that qualified its lead
STOPPED = "stopped"


def sender_address(campaign: Campaign) -> str:
    default_name, default_email = parseaddr(settings.DEFAULT_FROM_EMAIL)
    return formataddr((campaign.sender_name or default_name, campaign.sender_email or default_email))


# --- the claim and its end ----------------------------------------------------------------------


@dataclass(frozen=True)
class CycleStop:
    """Why a running cycle must stop before its next phase or send: its lease was taken over
    (an error: exit 3), or its campaign was switched off live (a note)."""

    reason: str
    error: bool = False


def attempt_claim(
    *, campaign: Campaign, lead: Lead, step: int, subject: str, message_id: str, now: datetime, body: str = ""
) -> OutreachAttempt | str:
    """Claim one send, or say why not: QUOTA_FULL, TAKEN (another worker has it or the lead
    changed since it was read), PAUSED, or ALREADY_SENT (this step of this lead was sent or
    claimed before).

    The daily quota is counted under a lock on the campaign's row, so concurrent cycles see
    each other's claims; the lead must still be due, in the status and with the attempt count
    that were read. The claimed lead says so in its stopped_reason until the send is recorded.
    """
    try:
        with transaction.atomic():
            locked = Campaign.objects.select_for_update().only("id", "active", "max_emails_per_day").get(pk=campaign.pk)
            if not locked.active:
                return PAUSED
            if quota_used(campaign=locked, now=now) >= locked.max_emails_per_day:
                return QUOTA_FULL
            taken = Lead.objects.filter(
                pk=lead.pk, status=lead.status, status__in=DUE_STATUSES, next_action_at__lte=now,
                attempt_count=lead.attempt_count,
            ).update(next_action_at=None, stopped_reason=sending_reason(step), updated_at=now)
            if not taken:
                return TAKEN
            return OutreachAttempt.objects.create(
                campaign=campaign, lead=lead, step=step, status=Status.CLAIMED,
                subject=subject, body=body, message_id=message_id, created_at=now,
            )
    except IntegrityError:
        return ALREADY_SENT


def attempt_release(*, attempt: OutreachAttempt, lead: Lead, now: datetime) -> bool:
    """Undo a claim whose mail certainly never left: no attempt, no quota, and the lead due as
    it was, unless something else (a reply, a stop by staff) changed it meanwhile."""
    with transaction.atomic():
        OutreachAttempt.objects.filter(pk=attempt.pk, status=Status.CLAIMED).delete()
        return bool(
            Lead.objects.filter(
                pk=lead.pk, next_action_at=None, stopped_reason=sending_reason(attempt.step),
                attempt_count=lead.attempt_count,
            ).update(next_action_at=lead.next_action_at, stopped_reason="", updated_at=now)
        )


def next_step_delay(steps: list[MessageStep], campaign: Campaign, sent_count: int) -> int | None:
    """Delay before the step after the `sent_count`-th, or None if that was the last one."""
    last = min(campaign.max_attempts_per_lead, len(steps))
    return steps[sent_count].delay_days if sent_count < last else None


def attempt_finish(
    *, attempt: OutreachAttempt, campaign: Campaign, outcome: SendOutcome, now: datetime,
    steps: list[MessageStep], actor: Actor,
) -> Lead | None:
    """Record what became of a claimed send on the attempt, and move the lead on.

    Both are written only if the attempt is still CLAIMED (staff may have resolved an old one)
    and the lead is re-read under its row lock: a reply recorded while the mail was on its way
    is kept. None when the attempt was no longer claimed.
    """
    with transaction.atomic():
        recorded = OutreachAttempt.objects.filter(pk=attempt.pk, status=Status.CLAIMED).update(
            status=outcome.status, error=outcome.error, finished_at=now
        )
        if not recorded:
            return None
        attempt.status, attempt.error, attempt.finished_at = outcome.status, outcome.error, now
        lead = lead_locked(attempt.lead_id)
        before = lead.status
        if outcome.status == Status.SENT:
            lead_record_send(lead=lead, campaign=campaign, now=now,
                             next_delay_days=next_step_delay(steps, campaign, lead.attempt_count + 1))
            kind, reason = LeadEvent.Kind.SENT, f"step {attempt.step}: {attempt.subject}"
        elif outcome.status == Status.FAILED:
            failures = OutreachAttempt.objects.filter(lead=lead, step=attempt.step, status=Status.FAILED).count()
            lead_record_send_failure(lead=lead, now=now, failures=failures, error=outcome.error,
                                     permanent=outcome.hard_bounce)
            kind, reason = LeadEvent.Kind.SEND_FAILED, f"step {attempt.step} not sent: {outcome.error}"
        else:
            lead.next_action_at = None
            lead.stopped_reason = f"step {attempt.step} may or may not have been sent: resolve it as sent or not sent"
            kind, reason = LeadEvent.Kind.SEND_UNKNOWN, f"step {attempt.step}: {outcome.error}"
        lead.updated_at = now
        lead.save()
        lead_event(lead=lead, kind=kind, actor=actor, now=now, from_status=before, to_status=lead.status,
                   reason=reason)
    return lead


def attempt_record_unsendable(
    *, campaign: Campaign, lead: Lead, step: int, subject: str, body: str, error: str, now: datetime, actor: Actor
) -> OutreachAttempt | None:
    """A message that cannot be built for this lead: a FAILED attempt with the reason (no
    quota), and the lead stopped, if it is still as it was read."""
    with transaction.atomic():
        stopped = lead_write_if_unchanged(
            lead=lead, now=now, expect=lead_as_read(lead),
            changes={"next_action_at": None, "stopped_reason": f"step {step} not sent: {error}"[:200]},
            event={"kind": LeadEvent.Kind.SEND_FAILED, "actor": actor, "from_status": lead.status,
                   "reason": f"step {step} not sent: {error}"},
        )
        if not stopped:
            return None
        return OutreachAttempt.objects.create(
            campaign=campaign, lead=lead, step=step, status=Status.FAILED, subject=subject, body=body,
            error=error, created_at=now, finished_at=now,
        )


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
    # The phase ended early for a reason cron should hear about (server down, unknown send,
    # database error).
    stopped: bool = False
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    previews: list[dict] = field(default_factory=list)


class _StopPhase(Exception):
    """Outreach of this campaign ends for this cycle; the message says why. `handled`: the
    lead being sent was dealt with (it does not wait for the next cycle)."""

    def __init__(self, message: str, *, handled: bool = False):
        super().__init__(message)
        self.handled = handled


def outreach_send_due(
    *, campaign: Campaign, now: datetime, dry_run: bool = True, qualified_needed: int | None = None,
    deadline: float | None = None, actor: Actor | None = None, stop_check: Callable[[], CycleStop | None] | None = None,
) -> OutreachResult:
    """Email the campaign's due leads, highest score first, strictly within today's quota.

    Dry run renders and counts what would be sent, and changes nothing: no mail, no attempt,
    no quota, no lead. Leads that must get no more email are stopped (LOST after all attempts
    or 30 days of silence; skipped when do_not_contact or suppressed). Outreach stops once
    `qualified_needed` more leads became QUALIFIED (the goal is met), when the mail server is
    down (before any lead is claimed), after a send whose outcome is unknown, and at
    `deadline` (time.monotonic()): what it did not reach waits for the next cycle.
    """
    result = OutreachResult()
    if not campaign.email_enabled:
        result.notes.append("email channel not enabled: no outreach")
        return result
    due = Lead.objects.filter(campaign=campaign, status__in=DUE_STATUSES, next_action_at__lte=now)
    due_total = due.count()
    if not due_total:
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
    handled = 0
    try:
        if not dry_run:
            run.check_sender()
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
            if outcome not in (TAKEN, RELEASED):
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
        run.mailer.close()
    # Due leads this cycle did not reach wait for the next one (quota, goal, budget, server down).
    result.skipped += due_total - handled
    return result


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
    mailer: Mailer = field(default_factory=lambda: Mailer(send_seconds=settings.CAM_SEND_TIMEOUT_SECONDS))
    released_in_a_row: int = 0

    def out_of_time(self) -> bool:
        """No send starts after the deadline; one started before it has its whole time limit
        (cutting a healthy but slow server short would make its send unknown)."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def clock(self) -> datetime:
        """Now, as the cycle's `now` moved on: a claim is dated when it is made (its quota day
        too), not when the cycle started, minutes earlier perhaps, before midnight."""
        return self.now + timedelta(seconds=int(time.monotonic() - self.started))  # whole seconds

    def check_sender(self) -> None:
        """A From address that cannot go into a header stops the phase before any claim: it
        is the campaign's problem, not one lead's."""
        try:
            message_prepare(EmailMessage(subject="check", body="", from_email=sender_address(self.campaign),
                                         to=["check@example.com"]))
        except MessageProblem as exc:
            raise _StopPhase(f"the campaign's sender cannot be used, nothing sent: {exc}") from exc

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
        step = self.steps[lead.attempt_count]
        try:
            message = message_render(step, lead, self.campaign)
        except RenderError as exc:
            result.skipped += 1
            result.errors.append(f"{lead.email}: {exc}")
            return Status.SKIPPED
        if self.dry_run:
            result.sent += 1
            if len(result.previews) < PREVIEW_LIMIT:
                result.previews.append({
                    "lead_id": lead.pk, "email": lead.email, "step": step.position,
                    "subject": message.subject, "body": message.body,
                })
            return QUALIFIED if lead_qualifies(lead=lead, campaign=self.campaign) else Status.SENT
        return self._send(lead, step, message)

    def _send(self, lead: Lead, step: MessageStep, message) -> str:
        campaign, now, result = self.campaign, self.now, self.result
        self.mailer.ready()  # before the claim: a server that is down must not use up leads
        from_email = sender_address(campaign)
        message_id = make_msgid(domain=parseaddr(from_email)[1].rpartition("@")[2] or "localhost")
        email = EmailMessage(
            subject=message.subject, body=message.body, from_email=from_email, to=[lead.email],
            headers=_thread_headers(lead, message_id),
        )
        try:
            prepared = message_prepare(email)
        except MessageProblem as exc:
            attempt = attempt_record_unsendable(
                campaign=campaign, lead=lead, step=step.position, subject=message.subject, body=message.body,
                error=str(exc), now=now, actor=self.actor,
            )
            if attempt is None:
                return TAKEN
            result.failed += 1
            result.errors.append(f"{lead.email}: step {step.position} not sent: {exc}")
            webhook_post(_event(attempt, lead, campaign))
            return Status.FAILED
        attempt = attempt_claim(
            campaign=campaign, lead=lead, step=step.position, subject=message.subject, body=message.body,
            message_id=message_id, now=self.clock(),
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
        if not isinstance(attempt, OutreachAttempt):
            return attempt
        try:
            sent = self.mailer.send(prepared)
        except MailServerDown:
            attempt_release(attempt=attempt, lead=lead, now=now)
            raise
        if sent.status == RELEASED:
            attempt_release(attempt=attempt, lead=lead, now=now)
            logger.warning("step %s to lead %s released: %s", step.position, lead.pk, sent.error)
            result.released += 1
            result.notes.append(f"{lead.email}: step {step.position} not sent ({sent.error}); it stays due")
            self.released_in_a_row += 1
            if self.released_in_a_row >= MAX_RELEASED_IN_A_ROW:
                raise _StopPhase(f"the mail server dropped the connection before {self.released_in_a_row} "
                                 "messages in a row: nothing more sent this cycle")
            return RELEASED
        self.released_in_a_row = 0
        if sent.error:
            logger.warning("sending step %s to lead %s: %s: %s", step.position, lead.pk, sent.status, sent.error)
        finished = attempt_finish(attempt=attempt, campaign=campaign, outcome=sent, now=now, steps=self.steps,
                                  actor=self.actor)
        lead = finished or lead
        if sent.hard_bounce:
            suppression_add(email=lead.email, reason=Suppression.Reason.BOUNCED, note=sent.error[:300], now=now,
                            actor=self.actor)
        webhook_post(_event(attempt, lead, campaign))
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
