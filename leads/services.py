"""Lead services: the status state machine and enrichment of NEW leads.

Every change of a lead's status goes through `lead_transition`, called by the functions here.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q

from campaigns.models import Campaign
from leads.enrichment import ENRICHERS, EnricherSkipped, email_verify, lead_score
from leads.models import TAG_DO_NOT_CONTACT, Lead

logger = logging.getLogger(__name__)

Status = Lead.Status
# Leads in these states get emails when due; the others are finished or not yet verified.
DUE_STATUSES = (Status.ENRICHED, Status.CONTACTED)
FINAL_STATUSES = (Status.QUALIFIED, Status.LOST, Status.REPLIED)
NO_REPLY_STOP = timedelta(days=30)
# After the last email, how long a lead has to reply before it is LOST.
LAST_STEP_REPLY_WAIT_DAYS = 7
# Failed sends of one step before CAM stops trying that lead (a failure leaves the status as is).
MAX_SEND_FAILURES = 3
# Lead fields an enricher may set (see leads.enrichment).
ENRICHABLE_FIELDS = ("first_name", "last_name", "company", "job_title", "company_size", "industry")

_TRANSITIONS = {
    Status.NEW: {Status.ENRICHED, Status.CONTACTED, Status.QUALIFIED, Status.REPLIED, Status.LOST},
    Status.ENRICHED: {Status.CONTACTED, Status.QUALIFIED, Status.REPLIED, Status.LOST},
    Status.CONTACTED: {Status.QUALIFIED, Status.REPLIED, Status.LOST},
    Status.REPLIED: {Status.QUALIFIED, Status.LOST},
    Status.QUALIFIED: {Status.LOST},
    Status.LOST: {Status.REPLIED, Status.QUALIFIED},
}


class InvalidTransition(ValueError):
    pass


def lead_transition(lead: Lead, to: str) -> None:
    """Move `lead` to status `to` (unsaved) or raise InvalidTransition; staying put is allowed."""
    if lead.status != to and to not in _TRANSITIONS[lead.status]:
        raise InvalidTransition(f"a {lead.status} lead cannot become {to}")
    lead.status = to


def _stop(lead: Lead, reason: str) -> None:
    lead.next_action_at = None
    lead.stopped_reason = reason[:200]


# --- state machine -----------------------------------------------------------------------------


def lead_apply_enrichment(*, lead: Lead, found: Iterable[dict], verification: dict, now: datetime) -> None:
    """Merge enrichers' findings and the verification into `lead` (unsaved) and score it.

    A lead with enrichment data becomes ENRICHED; one whose address failed verification
    gets no outreach.
    """
    for item in found:
        lead.enrichment.update(item.get("data", {}))
        for name, value in item.get("fields", {}).items():
            if value and name in ENRICHABLE_FIELDS:
                setattr(lead, name, value)
    lead.email_verification = verification
    lead.email_valid = verification["valid"]
    lead.score = lead_score(lead)
    lead.enriched_at = lead.updated_at = now
    if lead.enrichment and lead.status == Status.NEW:
        lead_transition(lead, Status.ENRICHED)
    if not lead.email_valid and lead.next_action_at is not None:
        _stop(lead, f"email failed verification: {verification.get('reason', '')}")


def followup_delay(delay_days: int, score: float) -> timedelta:
    """The wait before the next email: the step's delay, shortened by up to half for a score of 1."""
    return timedelta(days=delay_days) * (1 - 0.5 * max(0.0, min(score, 1.0)))


def lead_qualifies(*, lead: Lead, campaign: Campaign) -> bool:
    """A contacted lead is QUALIFIED when tagged hot or scored above the campaign's threshold."""
    return lead.hot or lead.score > campaign.qualification_threshold


def lead_record_send(
    *, lead: Lead, campaign: Campaign, now: datetime, next_delay_days: int | None
) -> None:
    """An email reached the server: CONTACTED, or QUALIFIED when hot or above the threshold.

    `next_delay_days` is the next step's delay, or None when this was the last attempt; the
    lead then waits that long for a reply before it becomes LOST (see `lead_check_stop`).
    """
    lead.attempt_count += 1
    lead.first_contacted_at = lead.first_contacted_at or now
    lead.last_contacted_at = now
    if lead.status in (Status.NEW, Status.ENRICHED, Status.CONTACTED):
        lead_transition(lead, Status.QUALIFIED if lead_qualifies(lead=lead, campaign=campaign) else Status.CONTACTED)
    if lead.status in FINAL_STATUSES:
        # Qualified now, or replied while the email was on its way: no follow-up.
        _stop(lead, lead.stopped_reason or lead.status.lower())
    else:
        wait = next_delay_days if next_delay_days is not None else LAST_STEP_REPLY_WAIT_DAYS
        lead.next_action_at = now + followup_delay(wait, lead.score)
        lead.stopped_reason = ""
    lead.save()



def lead_record_send_failure(*, lead: Lead, now: datetime, failures: int, error: str) -> None:
    """The server refused the email: status unchanged, retried later, stopped after a few tries."""
    if failures >= MAX_SEND_FAILURES:
        _stop(lead, f"{failures} failed sends: {error}")
    else:
        lead.next_action_at = now + timedelta(hours=failures)
    lead.save(update_fields=["next_action_at", "stopped_reason", "updated_at"])


def lead_stop(*, lead: Lead, reason: str, now: datetime) -> None:
    """No more outreach for this lead until staff look at it; its status is left as it is."""
    _stop(lead, reason)
    lead.updated_at = now
    lead.save(update_fields=["next_action_at", "stopped_reason", "updated_at"])


def lead_check_stop(*, lead: Lead, campaign: Campaign, now: datetime, suppressed: bool, steps: int) -> str | None:
    """Why a due lead must get no more email, or None. Applies the stop to `lead` (unsaved).

    Follow-ups stop for do_not_contact or suppressed leads; a lead 30+ days past its first
    contact, or that used all its attempts (or steps) with no reply, becomes LOST.
    """
    if lead.do_not_contact:
        reason = "tagged do_not_contact"
    elif suppressed:
        reason = "address is on the suppression list"
    elif lead.first_contacted_at and now - lead.first_contacted_at >= NO_REPLY_STOP:
        reason = f"no reply {NO_REPLY_STOP.days} days after first contact"
        lead_transition(lead, Status.LOST)
    elif lead.attempt_count >= min(campaign.max_attempts_per_lead, steps):
        reason = f"no reply after {lead.attempt_count} emails"
        lead_transition(lead, Status.LOST)
    else:
        return None
    _stop(lead, reason)
    return reason


def _mark_replied(lead: Lead, now: datetime) -> None:
    lead_transition(lead, Status.REPLIED)
    lead.replied_at = lead.replied_at or now
    _stop(lead, "replied")


def lead_mark_replied(*, lead: Lead, now: datetime) -> Lead:
    """A reply stops all follow-ups."""
    _mark_replied(lead, now)
    lead.save()
    return lead


def lead_tag_add(*, lead: Lead, tag: str) -> Lead:
    """Tagging a lead do_not_contact stops its outreach at once, not at its next due time."""
    tag = tag.strip().lower()
    if tag not in lead.tags:
        lead.tags = [*lead.tags, tag]
    if tag == TAG_DO_NOT_CONTACT:
        _stop(lead, "tagged do_not_contact")
    lead.save()
    return lead


# Statuses staff may set by hand; the rest follow from outreach.
STAFF_STATUSES = (Status.REPLIED, Status.QUALIFIED, Status.LOST)


@transaction.atomic
def lead_update(*, lead: Lead, data: dict, now: datetime) -> Lead:
    """Staff changes to a lead: its details (re-scored), its tags, or its status.

    REPLIED records a reply (follow-ups stop); QUALIFIED and LOST close the lead. Tagging
    do_not_contact stops outreach at once; removing that tag lets a lead it had stopped go on.
    """
    lead = Lead.objects.select_for_update().get(pk=lead.pk)
    details = [name for name in ENRICHABLE_FIELDS if name in data]
    for name in details:
        setattr(lead, name, data[name])
    if details and lead.enriched_at:
        lead.score = lead_score(lead)
    if "tags" in data:
        tags = list(dict.fromkeys(tag.strip().lower() for tag in data["tags"] if tag.strip()))
        removed_dnc = lead.do_not_contact and TAG_DO_NOT_CONTACT not in tags
        lead.tags = tags
        if lead.do_not_contact:
            _stop(lead, "tagged do_not_contact")
        elif removed_dnc and lead.stopped_reason == "tagged do_not_contact" and lead.status in (Status.NEW, *DUE_STATUSES):
            lead.next_action_at, lead.stopped_reason = now, ""
    status = data.get("status")
    if status == Status.REPLIED and lead.status != Status.REPLIED:
        _mark_replied(lead, now)
    elif status in (Status.QUALIFIED, Status.LOST) and lead.status != status:
        lead_transition(lead, status)
        _stop(lead, f"marked {status.lower()} by staff")
    elif status and status not in STAFF_STATUSES:
        raise InvalidTransition(f"staff can set {', '.join(STAFF_STATUSES)}, not {status}")
    lead.updated_at = now
    lead.save()
    return lead


SEARCH_FIELDS = ("email", "first_name", "last_name", "company", "job_title", "industry")


def leads_search(leads, text: str):
    """Leads matching every word of `text` in one of their fields ("maya chen", "saas cto")."""
    for word in text.split()[:10]:
        match = Q()
        for name in SEARCH_FIELDS:
            match |= Q(**{f"{name}__icontains": word})
        leads = leads.filter(match)
    return leads


@dataclass
class PhaseResult:
    count: int = 0
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def leads_enrich(*, campaign: Campaign, now: datetime, limit: int) -> PhaseResult:
    """Enrich, verify and score up to `limit` NEW leads of the campaign, oldest first."""
    result = PhaseResult()
    leads = list(Lead.objects.filter(campaign=campaign, status=Status.NEW).order_by("created_at", "id")[:limit])
    if not leads:
        return result
    found_by_enricher = []
    for name, enrich in ENRICHERS.items():
        try:
            found_by_enricher.append(enrich(leads))
        except EnricherSkipped as exc:
            result.notes.append(f"{name} enrichment skipped: {exc}")
        except Exception as exc:
            logger.exception("enricher %s failed for campaign %s", name, campaign.pk)
            result.errors.append(f"{name} enrichment: {exc}")
    for lead in leads:
        lead_apply_enrichment(
            lead=lead,
            found=[found[lead.pk] for found in found_by_enricher if lead.pk in found],
            verification=email_verify(lead.email),
            now=now,
        )
    with transaction.atomic():
        Lead.objects.bulk_update(
            leads,
            [*ENRICHABLE_FIELDS, "enrichment", "email_verification", "email_valid", "score", "status",
             "enriched_at", "next_action_at", "stopped_reason", "updated_at"],
            batch_size=200,
        )
    result.count = sum(1 for lead in leads if lead.status == Status.ENRICHED)
    return result
