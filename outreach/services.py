"""Outreach: the daily quota, at-most-once sending of due steps, suppression and events.

A send is claimed in the database before the mail server is called: under the campaign's row
lock (PostgreSQL) or SQLite's write lock, today's count is checked against the quota, the lead
is taken off the due list and a CLAIMED attempt is inserted, whose partial unique index makes a
second send of the same step to the same lead impossible. Only then is the mail sent.
"""

import logging
import smtplib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import formataddr, make_msgid, parseaddr

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from campaigns.models import Campaign, MessageStep
from leads.models import Lead
from leads.rows import email_normalise
from leads.services import (
    DUE_STATUSES,
    lead_check_stop,
    lead_qualifies,
    lead_record_send,
    lead_record_send_failure,
    lead_stop,
)
from outreach.clients.webhook import webhook_post
from outreach.messages import RenderError, campaign_steps, message_render
from outreach.models import OutreachAttempt, Suppression

logger = logging.getLogger(__name__)

Status = OutreachAttempt.Status
# Due leads read per cycle beyond the quota, to get past leads that turn out to need no email.
SKIP_ALLOWANCE = 200
PREVIEW_LIMIT = 100

# What happened to one due lead, besides the attempt statuses.
QUOTA_FULL = "quota_full"
TAKEN = "taken"  # another worker claimed it first
PAUSED = "paused"
ALREADY_SENT = "already_sent"
QUALIFIED = "qualified"  # a send (or, in a dry run, a would-be send) that qualified its lead


# --- quota -------------------------------------------------------------------------------------


def quota_day(now: datetime) -> tuple[datetime, datetime]:
    """The calendar day (TIME_ZONE) containing `now`, as [start, end)."""
    day = timezone.localdate(now)
    start = timezone.make_aware(datetime.combine(day, datetime.min.time()))
    end = timezone.make_aware(datetime.combine(day + timedelta(days=1), datetime.min.time()))
    return start, end


def quota_used(*, campaign: Campaign, now: datetime) -> int:
    start, end = quota_day(now)
    return OutreachAttempt.objects.filter(
        campaign=campaign, created_at__gte=start, created_at__lt=end, status__in=OutreachAttempt.QUOTA_STATUSES
    ).count()


def quota_remaining(*, campaign: Campaign, now: datetime) -> int:
    return max(campaign.max_emails_per_day - quota_used(campaign=campaign, now=now), 0)


def outreach_today(*, campaign: Campaign, now: datetime) -> dict[str, int]:
    """Today's attempts of the campaign by status, in one query."""
    start, end = quota_day(now)
    counts = OutreachAttempt.objects.filter(campaign=campaign, created_at__gte=start, created_at__lt=end).aggregate(
        total=Count("id"),
        sent=Count("id", filter=Q(status=Status.SENT)),
        failed=Count("id", filter=Q(status=Status.FAILED)),
        skipped=Count("id", filter=Q(status=Status.SKIPPED)),
        claimed=Count("id", filter=Q(status=Status.CLAIMED)),
        unknown=Count("id", filter=Q(status=Status.UNKNOWN)),
    )
    return counts


def sends_per_day(*, campaign: Campaign, now: datetime, days: int = 14) -> list[dict]:
    """Sent and failed attempts per calendar day (TIME_ZONE) over the last `days`, oldest first,
    in one query; days without attempts are zeros."""
    start, end = quota_day(now - timedelta(days=days - 1))[0], quota_day(now)[1]
    first = timezone.localdate(start)
    rows = (
        OutreachAttempt.objects.filter(campaign=campaign, created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(sent=Count("id", filter=Q(status=Status.SENT)), failed=Count("id", filter=Q(status=Status.FAILED)))
    )
    by_day = {row["day"]: row for row in rows}
    return [
        {"day": day, "sent": by_day.get(day, {}).get("sent", 0), "failed": by_day.get(day, {}).get("failed", 0)}
        for day in (first + timedelta(days=i) for i in range(days))
    ]


# --- suppression -------------------------------------------------------------------------------


@transaction.atomic
def suppression_add(
    *, email: str, reason: str = Suppression.Reason.MANUAL, note: str = "", now: datetime
) -> tuple[Suppression, bool]:
    """Suppress an address everywhere: no campaign adds it again, and its leads stop at once.
    Returns (suppression, created)."""
    email = email_normalise(email)
    suppression, created = Suppression.objects.get_or_create(
        email=email, defaults={"reason": reason, "note": note, "created_at": now}
    )
    Lead.objects.filter(email=email, next_action_at__isnull=False).update(
        next_action_at=None, stopped_reason="address is on the suppression list", updated_at=now
    )
    return suppression, created


def suppression_remove(*, suppression: Suppression) -> None:
    """Campaigns may add the address again; leads it stopped stay stopped until staff resume them."""
    suppression.delete()


def suppressed_emails(emails: list[str]) -> set[str]:
    return set(Suppression.objects.filter(email__in=emails).values_list("email", flat=True))


# --- sending -----------------------------------------------------------------------------------


@dataclass
class OutreachResult:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    previews: list[dict] = field(default_factory=list)


def sender_address(campaign: Campaign) -> str:
    default_name, default_email = parseaddr(settings.DEFAULT_FROM_EMAIL)
    return formataddr((campaign.sender_name or default_name, campaign.sender_email or default_email))


class MailServerDown(Exception):
    """The mail server cannot be reached or refuses our sender or login: nothing can go out now."""


def attempt_claim(
    *, campaign: Campaign, lead: Lead, step: int, subject: str, message_id: str, now: datetime
) -> OutreachAttempt | str:
    """Claim one send, or say why not: QUOTA_FULL, TAKEN (another worker has it), PAUSED, or
    ALREADY_SENT (this step of this lead was sent or claimed before).

    The daily quota is counted under a lock on the campaign's row, so concurrent cycles see
    each other's claims; the lead must still be due with the same attempt count.
    """
    try:
        with transaction.atomic():
            locked = Campaign.objects.select_for_update().only("id", "active", "max_emails_per_day").get(pk=campaign.pk)
            if not locked.active:
                return PAUSED
            if quota_used(campaign=locked, now=now) >= locked.max_emails_per_day:
                return QUOTA_FULL
            taken = Lead.objects.filter(
                pk=lead.pk, status__in=DUE_STATUSES, next_action_at__lte=now, attempt_count=lead.attempt_count
            ).update(next_action_at=None, updated_at=now)
            if not taken:
                return TAKEN
            return OutreachAttempt.objects.create(
                campaign=campaign, lead=lead, step=step, status=Status.CLAIMED,
                subject=subject, message_id=message_id, created_at=now,
            )
    except IntegrityError:
        return ALREADY_SENT


def attempt_release(*, attempt: OutreachAttempt, lead: Lead) -> None:
    """Undo a claim whose mail certainly never left (the server refused us before any recipient)."""
    with transaction.atomic():
        attempt.delete()
        Lead.objects.filter(pk=lead.pk, next_action_at=None).update(next_action_at=lead.next_action_at)


def attempt_finish(
    *, attempt: OutreachAttempt, campaign: Campaign, status: str, error: str, now: datetime, steps: list[MessageStep]
) -> Lead:
    """Record the server's answer on the attempt and move the lead on (state machine).

    The lead is re-read under a row lock: a reply recorded while the mail was on its way is kept.
    """
    with transaction.atomic():
        attempt.status, attempt.error, attempt.finished_at = status, error, now
        attempt.save(update_fields=["status", "error", "finished_at"])
        lead = Lead.objects.select_for_update().get(pk=attempt.lead_id)
        if status == Status.SENT:
            next_delay = _next_delay(steps, campaign, lead.attempt_count + 1)
            lead_record_send(lead=lead, campaign=campaign, now=now, next_delay_days=next_delay)
        elif status == Status.FAILED:
            failures = OutreachAttempt.objects.filter(lead=lead, step=attempt.step, status=Status.FAILED).count()
            lead_record_send_failure(lead=lead, now=now, failures=failures, error=error)
        else:
            lead_stop(lead=lead, reason=f"step {attempt.step} may or may not have been sent ({error})", now=now)
    return lead


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


def _next_delay(steps: list[MessageStep], campaign: Campaign, sent_count: int) -> int | None:
    """Delay before the step after the `sent_count`-th, or None if that was the last one."""
    last = min(campaign.max_attempts_per_lead, len(steps))
    return steps[sent_count].delay_days if sent_count < last else None


def _record_stop(lead: Lead, campaign: Campaign, reason: str, now: datetime, attempts_before: int) -> bool:
    """Save a stopped lead, unless it changed since it was read (e.g. a reply came in).

    A lead stopped for who it is (do_not_contact, suppressed), not for its silence, gets a
    skipped attempt so the history shows why it got no email.
    """
    with transaction.atomic():
        stopped = Lead.objects.filter(
            pk=lead.pk, status__in=DUE_STATUSES, next_action_at__lte=now, attempt_count=attempts_before
        ).update(status=lead.status, next_action_at=None, stopped_reason=lead.stopped_reason, updated_at=now)
        if not stopped:
            return False
        attempt = None
        if lead.status != Lead.Status.LOST:
            attempt = OutreachAttempt.objects.create(
                campaign=campaign, lead=lead, step=attempts_before + 1, status=Status.SKIPPED,
                error=reason, created_at=now, finished_at=now,
            )
    if attempt:
        webhook_post(_event(attempt, lead, campaign))
    return True


class _Mailer:
    """One SMTP (or file) connection for a cycle, and what each send's exception means."""

    def __init__(self):
        self.connection = None

    def open(self) -> None:
        if self.connection is not None:
            return
        try:
            connection = get_connection(fail_silently=False)
            connection.open()
        except Exception as exc:
            raise MailServerDown(f"{type(exc).__name__}: {exc}") from exc
        self.connection = connection

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            finally:
                self.connection = None

    def send(self, email: EmailMessage) -> "SendOutcome":
        """SENT; FAILED when the server refused this mail (nothing was sent); UNKNOWN when the
        connection broke mid-send. Raises MailServerDown when the server refuses our sender or
        login, which no other mail would get past either."""
        email.connection = self.connection
        try:
            email.send(fail_silently=False)
            return SendOutcome(Status.SENT)
        except (smtplib.SMTPSenderRefused, smtplib.SMTPAuthenticationError) as exc:
            self.close()
            raise MailServerDown(f"{type(exc).__name__}: {exc}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            outcome = SendOutcome(Status.FAILED, _describe(exc), hard_bounce=bool(codes) and min(codes) >= 500)
        except smtplib.SMTPResponseException as exc:
            outcome = SendOutcome(Status.FAILED, _describe(exc))
        except Exception as exc:  # disconnect, timeout, disk full: the mail may have left
            outcome = SendOutcome(Status.UNKNOWN, _describe(exc))
        self.close()
        return outcome


@dataclass(frozen=True)
class SendOutcome:
    status: str
    error: str = ""
    # The recipient's server says the address does not exist (5xx): suppress it everywhere.
    hard_bounce: bool = False


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def outreach_send_due(
    *, campaign: Campaign, now: datetime, dry_run: bool = True, qualified_needed: int | None = None
) -> OutreachResult:
    """Email the campaign's due leads, highest score first, strictly within today's quota.

    Dry run renders and counts what would be sent, and changes nothing: no mail, no attempt,
    no quota, no lead. Leads that must get no more email are stopped (LOST after all attempts
    or 30 days of silence; skipped when do_not_contact or suppressed). Outreach stops once
    `qualified_needed` more leads became QUALIFIED (the goal is met), and when the mail server
    is down, before any lead is claimed.
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

    run = _Run(campaign=campaign, now=now, dry_run=dry_run, steps=campaign_steps(campaign), result=result)
    candidates = list(due.order_by("-score", "next_action_at", "id")[: remaining + SKIP_ALLOWANCE])
    run.suppressed = suppressed_emails([lead.email for lead in candidates])
    handled = 0
    try:
        for lead in candidates:
            if remaining <= 0:
                break
            if qualified_needed is not None and qualified_needed <= 0:
                result.notes.append("the goal would be met by this cycle: no more outreach" if dry_run
                                    else "goal met by this cycle: no more outreach")
                break
            handled += 1
            outcome = run.one(lead)
            if outcome in (QUOTA_FULL, PAUSED):
                handled -= 1
                result.notes.append("campaign was paused during the cycle" if outcome == PAUSED
                                    else f"daily quota of {campaign.max_emails_per_day} reached")
                break
            if outcome in (Status.SENT, Status.FAILED, Status.UNKNOWN, QUALIFIED):
                remaining -= 1
            if outcome == QUALIFIED and qualified_needed is not None:
                qualified_needed -= 1
    except MailServerDown as exc:
        handled -= 1
        result.errors.append(f"mail server unavailable, nothing more sent: {exc}")
    except Exception as exc:  # counts so far stay in the result; the cycle reports the error
        logger.exception("outreach failed for campaign %s", campaign.pk)
        result.errors.append(f"outreach: {type(exc).__name__}: {exc}")
    finally:
        run.mailer.close()
    # Due leads this cycle did not reach wait for the next one (quota, goal, server down).
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
    suppressed: set[str] = field(default_factory=set)
    mailer: _Mailer = field(default_factory=_Mailer)

    def one(self, lead: Lead) -> str:
        """Handle one due lead; return what happened to it."""
        result, attempts_before = self.result, lead.attempt_count
        reason = lead_check_stop(
            lead=lead, campaign=self.campaign, now=self.now, suppressed=lead.email in self.suppressed,
            steps=len(self.steps),
        )
        if reason:
            if self.dry_run or _record_stop(lead, self.campaign, reason, self.now, attempts_before):
                if lead.status == Lead.Status.LOST:
                    result.lost += 1
                else:
                    result.skipped += 1
            return "stopped"
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
        self.mailer.open()  # before the claim: a server that is down must not use up leads
        from_email = sender_address(campaign)
        message_id = make_msgid(domain=parseaddr(from_email)[1].rpartition("@")[2] or "localhost")
        attempt = attempt_claim(
            campaign=campaign, lead=lead, step=step.position, subject=message.subject, message_id=message_id, now=now
        )
        if attempt == ALREADY_SENT:
            lead_stop(lead=lead, reason=f"step {step.position} was already sent or claimed: check its attempts", now=now)
            result.notes.append(f"{lead.email}: step {step.position} was already sent or claimed; lead stopped")
            return ALREADY_SENT
        if not isinstance(attempt, OutreachAttempt):
            return attempt
        email = EmailMessage(
            subject=message.subject, body=message.body, from_email=from_email, to=[lead.email],
            headers=_thread_headers(lead, message_id),
        )
        try:
            sent = self.mailer.send(email)
        except MailServerDown:
            attempt_release(attempt=attempt, lead=lead)
            raise
        status = sent.status
        if sent.error:
            logger.warning("sending step %s to lead %s: %s: %s", step.position, lead.pk, status, sent.error)
        lead = attempt_finish(attempt=attempt, campaign=campaign, status=status, error=sent.error, now=now, steps=self.steps)
        if sent.hard_bounce:
            suppression_add(email=lead.email, reason=Suppression.Reason.BOUNCED, note=sent.error[:300], now=now)
        webhook_post(_event(attempt, lead, campaign))
        if status == Status.SENT:
            result.sent += 1
            return QUALIFIED if lead.status == Lead.Status.QUALIFIED else Status.SENT
        result.failed += 1
        if status == Status.UNKNOWN:
            result.errors.append(f"{lead.email}: connection lost while sending step {step.position}; not retried")
        return status
