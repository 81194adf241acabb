"""What needs staff: sends left claimed or unknown, and stopped leads staff may resume.

A send left CLAIMED (the process died mid-send) or UNKNOWN (the connection broke after the
message was handed over) is never retried by the engine (SPEC §4, §6): staff look (the mailbox's
Sent folder, the recipient) and resolve it as sent or not sent. Resuming a stopped lead makes
it due again, never sooner than its step's delay after the last email, and never for a step
that was sent, claimed or is unknown.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from campaigns.models import Campaign
from campaigns.services import Refused
from leads.models import Lead, LeadEvent
from leads.services import (
    FINAL_STATUSES,
    NO_REPLY_STOP,
    Actor,
    followup_delay,
    lead_event,
    lead_locked,
    lead_record_send,
)
from outreach.messages import campaign_steps
from outreach.claims import next_step_delay
from outreach.models import OutreachAttempt, Suppression

Status = OutreachAttempt.Status


def attempts_needing_attention(*, campaign: Campaign | None = None) -> QuerySet:
    """Claimed and unknown sends, any day, oldest first (a campaign's, or all)."""
    attempts = OutreachAttempt.objects.filter(status__in=OutreachAttempt.ATTENTION_STATUSES)
    if campaign is not None:
        attempts = attempts.filter(campaign=campaign)
    return attempts.select_related("lead", "campaign").order_by("created_at", "id")


def in_flight_window() -> timedelta:
    """How long a claim may belong to a send still running: a cycle's budget plus one send.
    A claim is dated at its cycle's start, so it is certainly abandoned after this."""
    return timedelta(seconds=settings.CAM_CYCLE_BUDGET_SECONDS + settings.CAM_SEND_TIMEOUT_SECONDS)


def attempt_resolve(*, attempt: OutreachAttempt, outcome: str, actor: Actor, now: datetime) -> OutreachAttempt:
    """Staff say what became of a claimed or unknown send, recorded on the attempt (who, when).

    "sent": the attempt is SENT and the lead moves on as if the send had been recorded when it
    was made (next step due after its delay from then). "not_sent": the attempt is NOT_SENT, so
    the step may be sent again, and a lead that this send had stopped is due again at once. A
    claim young enough to belong to a send still in progress is refused.
    """
    if outcome not in OutreachAttempt.Resolution.values:
        raise Refused(f"outcome must be one of {', '.join(OutreachAttempt.Resolution.values)}")
    with transaction.atomic():
        attempt = OutreachAttempt.objects.select_for_update().select_related("campaign").get(pk=attempt.pk)
        if attempt.status not in OutreachAttempt.ATTENTION_STATUSES:
            raise Refused(f"this send is {attempt.status}: only claimed or unknown sends are resolved")
        if attempt.status == Status.CLAIMED and attempt.created_at > now - in_flight_window():
            after = attempt.created_at + in_flight_window()
            raise Refused(f"this send may still be in progress: resolve it after {after:%Y-%m-%d %H:%M:%S %Z}")
        if attempt.lead_id is None:  # the person was erased: only the attempt's status is left to set
            attempt.status = Status.SENT if outcome == OutreachAttempt.Resolution.SENT else Status.NOT_SENT
            attempt.resolution, attempt.resolved_by, attempt.resolved_at = outcome, actor.user, now
            attempt.finished_at = attempt.finished_at or now
            attempt.save(update_fields=["status", "resolution", "resolved_by", "resolved_at", "finished_at"])
            return attempt
        lead = lead_locked(attempt.lead_id)
        before, before_due = lead.status, lead.next_action_at
        attempt.resolution, attempt.resolved_by, attempt.resolved_at = outcome, actor.user, now
        attempt.finished_at = attempt.finished_at or now
        stopped_by_it = lead.next_action_at is None and lead.attempt_count == attempt.step - 1
        steps = campaign_steps(attempt.campaign)
        if outcome == OutreachAttempt.Resolution.SENT:
            attempt.status = Status.SENT
            if stopped_by_it:  # the send was never recorded on the lead: record it as of then
                lead.stopped_reason = ""
                lead_record_send(lead=lead, campaign=attempt.campaign, now=attempt.created_at,
                                 next_delay_days=next_step_delay(steps, attempt.campaign, attempt.step))
            note = f"step {attempt.step} resolved as sent"
        else:
            attempt.status = Status.NOT_SENT
        # Saved before the lead is looked at: a resolved send no longer holds the lead back.
        attempt.save(update_fields=["status", "resolution", "resolved_by", "resolved_at", "finished_at"])
        if outcome == OutreachAttempt.Resolution.NOT_SENT:
            refusal = lead_resume_refusal(lead, now, steps) if stopped_by_it else "it was not stopped by this send"
            if refusal is None:
                _make_due(lead, steps, now)
                note = f"step {attempt.step} resolved as not sent: the lead is due again"
            else:
                note = f"step {attempt.step} resolved as not sent; the lead stays as it is ({refusal})"
        lead.updated_at = now
        lead.save()
        lead_event(lead=lead, kind=LeadEvent.Kind.RESOLVED, actor=actor, now=now, from_status=before,
                   to_status=lead.status, reason=note)
        if outcome == OutreachAttempt.Resolution.NOT_SENT and before_due is None and lead.next_action_at is not None:
            lead_event(lead=lead, kind=LeadEvent.Kind.RESUMED, actor=actor, now=now, from_status=lead.status,
                       reason=f"due again after step {attempt.step} was resolved")
    return attempt


def lead_resume_refusal(lead: Lead, now: datetime, steps: list | None = None) -> str | None:
    """Why a lead may not be resumed now, or None (for the buttons: shown only when it may).
    `steps`: the campaign's steps, when the caller has them."""
    if lead.status in FINAL_STATUSES:
        return f"a {lead.status} lead is finished: it gets no more email"
    if lead.do_not_contact:
        return "the lead is tagged do_not_contact: remove the tag first"
    suppression = Suppression.objects.filter(email=lead.email).first()
    if suppression:
        return f"{lead.email} is on the suppression list ({suppression.reason}): remove it from the list first"
    if lead.next_action_at is not None:
        return "the lead is not stopped: it is due for its next email"
    pending = lead.attempts.filter(status__in=OutreachAttempt.ATTENTION_STATUSES).order_by("step").first()
    if pending:
        return f"step {pending.step}'s send is {pending.status}: resolve it as sent or not sent first"
    steps = steps if steps is not None else campaign_steps(lead.campaign)
    if lead.attempt_count >= min(lead.campaign.max_attempts_per_lead, len(steps)):
        return f"the lead has had all {lead.attempt_count} emails of the sequence"
    if lead.first_contacted_at and now - lead.first_contacted_at >= NO_REPLY_STOP:
        return f"the lead was first contacted {NO_REPLY_STOP.days}+ days ago: the sequence is over"
    if lead.attempts.filter(step=lead.attempt_count + 1, status__in=OutreachAttempt.SENDING_STATUSES).exists():
        return f"step {lead.attempt_count + 1} was already sent: check the lead's emails"
    return None


def lead_resume(*, lead: Lead, actor: Actor, now: datetime) -> Lead:
    """A stopped lead is due again: stopped by failed sends, by a suppression later removed, by
    do_not_contact later removed, by a send resolved as not sent. Refused (Refused, with the
    reason) for suppressed, do_not_contact and finished leads, and while a send is unresolved.
    The next email is due no sooner than its step's delay after the last one."""
    with transaction.atomic():
        lead = lead_locked(lead.pk)
        steps = campaign_steps(lead.campaign)
        refusal = lead_resume_refusal(lead, now, steps)
        if refusal:
            raise Refused(refusal)
        was = lead.stopped_reason
        _make_due(lead, steps, now)
        lead.updated_at = now
        lead.save(update_fields=["next_action_at", "stopped_reason", "updated_at"])
        lead_event(lead=lead, kind=LeadEvent.Kind.RESUMED, actor=actor, now=now, from_status=lead.status,
                   reason=f"was stopped: {was}" if was else "resumed")
    return lead


def _make_due(lead: Lead, steps: list, now: datetime) -> None:
    """Due again (unsaved), no sooner than its next step's delay after the last email."""
    due = now
    if lead.attempt_count and lead.last_contacted_at:
        due = max(now, lead.last_contacted_at + followup_delay(steps[lead.attempt_count].delay_days, lead.score))
    lead.next_action_at, lead.stopped_reason = due, ""
