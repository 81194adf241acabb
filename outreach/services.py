"""Outreach: the daily quota, at-most-once sending of due steps, suppression and events.

A send is claimed in the database before the mail server is called: under the campaign's row
lock (PostgreSQL) or SQLite's write lock, today's count is checked against the quota, the lead
is taken off the due list and a CLAIMED attempt is inserted, whose partial unique index makes a
second send of the same step to the same lead impossible. Only then is the mail sent.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import formataddr, make_msgid, parseaddr

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
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
)
from outreach.clients.webhook import webhook_post
from outreach.messages import RenderError, campaign_steps, message_render
from outreach.models import OutreachAttempt, Suppression

logger = logging.getLogger(__name__)

Status = OutreachAttempt.Status
# Due leads read per cycle beyond the quota, to get past leads that turn out to need no email.
SKIP_ALLOWANCE = 200
PREVIEW_LIMIT = 100

QUOTA_FULL = "quota_full"
TAKEN = "taken"
PAUSED = "paused"


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
    )
    return counts


# --- suppression -------------------------------------------------------------------------------


def suppression_add(*, email: str, reason: str = Suppression.Reason.MANUAL, note: str = "", now: datetime) -> Suppression:
    """Suppress an address everywhere: no campaign adds it again, and its leads stop at once."""
    email = email_normalise(email)
    suppression, _ = Suppression.objects.get_or_create(
        email=email, defaults={"reason": reason, "note": note, "created_at": now}
    )
    Lead.objects.filter(email=email, next_action_at__isnull=False).update(
        next_action_at=None, stopped_reason="address is on the suppression list", updated_at=now
    )
    return suppression


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


def attempt_claim(
    *, campaign: Campaign, lead: Lead, step: int, subject: str, message_id: str, now: datetime
) -> OutreachAttempt | str:
    """Claim one send, or say why not: QUOTA_FULL, TAKEN (another worker has it) or PAUSED.

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
        return TAKEN


def attempt_finish(
    *, attempt: OutreachAttempt, lead: Lead, campaign: Campaign, error: str, now: datetime, next_delay_days: int | None
) -> None:
    """Record the server's answer on the attempt and move the lead on (state machine)."""
    with transaction.atomic():
        attempt.status = Status.FAILED if error else Status.SENT
        attempt.error = error
        attempt.finished_at = now
        attempt.save(update_fields=["status", "error", "finished_at"])
        lead.refresh_from_db()
        if error:
            failures = OutreachAttempt.objects.filter(lead=lead, step=attempt.step, status=Status.FAILED).count()
            lead_record_send_failure(lead=lead, now=now, failures=failures, error=error)
        else:
            lead_record_send(lead=lead, campaign=campaign, now=now, next_delay_days=next_delay_days)


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


def _record_stop(lead: Lead, campaign: Campaign, reason: str, now: datetime) -> OutreachAttempt | None:
    """Save a stopped lead; a lead stopped for who it is (not for silence) gets a skipped attempt."""
    with transaction.atomic():
        lead.updated_at = now
        lead.save(update_fields=["status", "next_action_at", "stopped_reason", "updated_at"])
        if lead.status == Lead.Status.LOST:
            return None
        return OutreachAttempt.objects.create(
            campaign=campaign, lead=lead, step=lead.attempt_count + 1, status=Status.SKIPPED,
            error=reason, created_at=now, finished_at=now,
        )


def outreach_send_due(
    *, campaign: Campaign, now: datetime, dry_run: bool = True, qualified_needed: int | None = None
) -> OutreachResult:
    """Email the campaign's due leads, highest score first, strictly within today's quota.

    Outreach stops once `qualified_needed` more leads became QUALIFIED: the goal is met.

    Dry run renders and counts what would be sent, and changes nothing: no mail, no attempt,
    no quota, no lead. Leads that must get no more email are stopped (LOST after all attempts
    or 30 days of silence; skipped when do_not_contact or suppressed).
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

    steps = campaign_steps(campaign)
    candidates = list(due.order_by("-score", "next_action_at", "id")[: remaining + SKIP_ALLOWANCE])
    suppressed = suppressed_emails([lead.email for lead in candidates])
    connection = None
    handled = 0
    try:
        for lead in candidates:
            if remaining <= 0:
                break
            handled += 1
            reason = lead_check_stop(
                lead=lead, campaign=campaign, now=now, suppressed=lead.email in suppressed, steps=len(steps)
            )
            if reason:
                if lead.status == Lead.Status.LOST:
                    result.lost += 1
                else:
                    result.skipped += 1
                if not dry_run:
                    attempt = _record_stop(lead, campaign, reason, now)
                    if attempt:
                        webhook_post(_event(attempt, lead, campaign))
                continue

            step = steps[lead.attempt_count]
            try:
                message = message_render(step, lead, campaign)
            except RenderError as exc:
                result.skipped += 1
                result.errors.append(f"{lead.email}: {exc}")
                continue
            if dry_run:
                result.sent += 1
                remaining -= 1
                qualified = lead_qualifies(lead=lead, campaign=campaign)
                if len(result.previews) < PREVIEW_LIMIT:
                    result.previews.append(
                        {"lead_id": lead.pk, "email": lead.email, "step": step.position, "subject": message.subject}
                    )
                if qualified_needed is not None and qualified:
                    qualified_needed -= 1
                    if qualified_needed <= 0:
                        result.notes.append("the goal would be met by this cycle: no more outreach")
                        break
                continue

            from_email = sender_address(campaign)
            message_id = make_msgid(domain=parseaddr(from_email)[1].rpartition("@")[2] or "localhost")
            attempt = attempt_claim(
                campaign=campaign, lead=lead, step=step.position, subject=message.subject,
                message_id=message_id, now=now,
            )
            if attempt == QUOTA_FULL:
                handled -= 1
                result.notes.append(f"daily quota of {campaign.max_emails_per_day} reached")
                break
            if attempt == PAUSED:
                handled -= 1
                result.notes.append("campaign was paused during the cycle")
                break
            if attempt == TAKEN:
                continue
            remaining -= 1
            email = EmailMessage(
                subject=message.subject, body=message.body, from_email=from_email, to=[lead.email],
                headers=_thread_headers(lead, message_id),
            )
            error = ""
            try:
                if connection is None:
                    # Opened here so the backend keeps it open for the whole cycle.
                    connection = get_connection(fail_silently=False)
                    connection.open()
                email.connection = connection
                email.send(fail_silently=False)
            except Exception as exc:  # the server's refusal is the attempt's result, not a crash
                error = f"{type(exc).__name__}: {exc}"[:2000]
                logger.warning("sending step %s to lead %s failed: %s", step.position, lead.pk, error)
                if connection is not None:
                    connection.close()
                    connection = None
            attempt_finish(
                attempt=attempt, lead=lead, campaign=campaign, error=error, now=now,
                next_delay_days=_next_delay(steps, campaign, lead.attempt_count + (0 if error else 1)),
            )
            webhook_post(_event(attempt, lead, campaign))
            if error:
                result.failed += 1
                continue
            result.sent += 1
            if qualified_needed is not None and lead.status == Lead.Status.QUALIFIED:
                qualified_needed -= 1
                if qualified_needed <= 0:
                    result.notes.append("goal met during this cycle: no more outreach")
                    break
    finally:
        if connection is not None:
            connection.close()
    # Due leads this cycle did not reach wait for tomorrow's quota.
    result.skipped += due_total - handled
    return result
