"""Claiming a send and recording its end (SPEC §4, §6, §8): the one transaction that checks every
limit before any mail server is called, the release of a send that certainly did not leave, and
the outcome of one that did. outreach.sending runs them over a campaign's due leads.

The claim counts today's quota under the campaign's row lock and, with a mailbox, its cap (with
warm-up), its gap and the lead's send window under the mailbox's row lock, so concurrent cycles
of campaigns sharing a mailbox see each other's claims. A CLAIMED attempt's partial unique index
makes a second send of the same step to the same lead impossible.
"""

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction

from campaigns.models import Campaign, MessageStep
from leads.models import Lead, LeadEvent
from leads.services import (
    DUE_STATUSES,
    Actor,
    lead_as_read,
    lead_event,
    lead_record_send,
    lead_record_send_failure,
    lead_write_if_unchanged,
    sending_reason,
)
from outreach.limits import (
    conversation_elsewhere,
    mailbox_next_gap,
    mailbox_room,
    mailbox_wait,
    quota_used,
    send_zone,
)
from outreach.models import Mailbox, OutreachAttempt, Suppression
from outreach.transport import SendOutcome

Status = OutreachAttempt.Status

# What happened to one due lead, besides the attempt statuses.
QUOTA_FULL = "quota_full"
TAKEN = "taken"  # another worker claimed it first
PAUSED = "paused"
ALREADY_SENT = "already_sent"
# A first email to an address in another campaign's sequence waits this long before it is tried again.
CONVERSATION_WAIT = timedelta(days=1)
SUPPRESSED = "suppressed"  # suppressed since the run read the list (an unsubscribe a moment ago)
ELSEWHERE = "elsewhere"  # the address is in another campaign's sequence


def attempt_claim(
    *, campaign: Campaign, lead: Lead, step: int, subject: str, message_id: str, now: datetime, body: str = "",
    mailbox: Mailbox | None = None,
) -> OutreachAttempt | str:
    """Claim one send, or say why not: QUOTA_FULL, TAKEN (another worker has it or the lead
    changed since it was read), PAUSED, ALREADY_SENT (this step of this lead was sent or
    claimed before), SUPPRESSED, ELSEWHERE (a first email to an address in another campaign's
    sequence), or one of limits.WAITS (the mailbox's cap, gap, window, or it is off).

    Everything is checked in one transaction (SPEC §8): the daily quota under a lock on the
    campaign's row, the mailbox's cap across all its campaigns (with warm-up), its gap and the
    send window in the lead's time zone under a lock on the mailbox's row, so concurrent cycles
    of campaigns sharing a mailbox see each other's claims; a first email locks every lead with
    the address (in id order, so two campaigns cannot deadlock) before looking for another
    campaign's sequence. The lead must still be due, in the status and with the attempt count
    that were read. The claimed lead says so in its stopped_reason until the send is recorded,
    and the mailbox's next send waits its gap (with jitter): the attempt's `mailbox` carries it.
    """
    try:
        with transaction.atomic():
            locked = Campaign.objects.select_for_update().only("id", "active", "max_emails_per_day").get(pk=campaign.pk)
            if not locked.active:
                return PAUSED
            if quota_used(campaign=locked, now=now) >= locked.max_emails_per_day:
                return QUOTA_FULL
            box = None
            if mailbox is not None:
                box = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
                wait = mailbox_wait(mailbox=box, room=mailbox_room(mailbox=box, now=now), at=now,
                                    zone=send_zone(lead=lead, campaign=campaign, mailbox=box))
                if wait:
                    return wait
            if Suppression.objects.filter(email=lead.email).exists():
                return SUPPRESSED
            if lead.attempt_count == 0:
                list(Lead.objects.select_for_update().filter(email=lead.email).order_by("pk").values_list("pk"))
                if other := conversation_elsewhere(lead=lead):
                    _postpone(lead, other, now)
                    return ELSEWHERE
            taken = Lead.objects.filter(
                pk=lead.pk, status=lead.status, status__in=DUE_STATUSES, next_action_at__lte=now,
                attempt_count=lead.attempt_count,
            ).update(next_action_at=None, stopped_reason=sending_reason(step), updated_at=now)
            if not taken:
                return TAKEN
            if box is not None:
                box.next_send_at = mailbox_next_gap(mailbox=box, now=now)
                box.save(update_fields=["next_send_at"])
            return OutreachAttempt.objects.create(
                campaign=campaign, lead=lead, step=step, status=Status.CLAIMED, mailbox=box,
                subject=subject, body=body, message_id=message_id, created_at=now,
            )
    except IntegrityError:
        return ALREADY_SENT


def _postpone(lead: Lead, other: Lead, now: datetime) -> None:
    """A first email held back because the address is in another campaign's sequence: the lead
    is looked at again a day later (not every minute), with the reason in its history."""
    reason = (f"not started: the address is in a sequence of campaign #{other.campaign_id} "
              f"({other.campaign.name}); looked at again in {CONVERSATION_WAIT.days} day")
    lead_write_if_unchanged(
        lead=lead, now=now, expect=lead_as_read(lead), changes={"next_action_at": now + CONVERSATION_WAIT},
        event={"kind": LeadEvent.Kind.POSTPONED, "actor": Actor("one conversation per person"),
               "from_status": lead.status, "reason": reason},
    )


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
        bounced_at = now if outcome.hard_bounce else None
        recorded = OutreachAttempt.objects.filter(pk=attempt.pk, status=Status.CLAIMED).update(
            status=outcome.status, error=outcome.error, finished_at=now,
            provider_message_id=outcome.provider_message_id, bounced_at=bounced_at,
        )
        if not recorded:
            return None
        attempt.status, attempt.error, attempt.finished_at = outcome.status, outcome.error, now
        attempt.provider_message_id, attempt.bounced_at = outcome.provider_message_id, bounced_at
        lead = Lead.objects.select_for_update().filter(pk=attempt.lead_id).first()
        if lead is None:  # the person was erased while the mail was on its way: nothing of theirs is kept
            OutreachAttempt.objects.filter(pk=attempt.pk).update(error="")
            return None
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
