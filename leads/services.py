"""Lead services: the status state machine and enrichment of NEW leads.

Every change of a lead's status, due time or attempt count is written under the lead's row
lock or conditionally on what was read (a stale writer changes nothing), and recorded as a
LeadEvent. Status changes follow `lead_transition`.
"""

import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Campaign
from leads.dropcontact_enrichment import dropcontact_apply, dropcontact_run
from leads.enrichment import ENRICHERS, FREE_MAIL_DOMAINS, email_verify, lead_score
from leads.models import TAG_DO_NOT_CONTACT, Lead, LeadEvent
from leads.rows import email_normalise, email_syntax_error

# Suppression is outreach's table, but no lead may be given a suppressed address.
from outreach.models import Suppression

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
ENRICHABLE_FIELDS = ("first_name", "last_name", "company", "job_title", "company_size", "industry", "city", "country",
                     "linkedin_url", "website", "timezone")

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


SENDING_PREFIX = "sending step"


def sending_reason(step: int) -> str:
    """A claimed lead's stopped_reason: it stays only if the send was interrupted."""
    return f"{SENDING_PREFIX} {step}: if this stays, the send was interrupted (resolve it as sent or not sent)"


def _stop(lead: Lead, reason: str) -> None:
    lead.next_action_at = None
    lead.stopped_reason = reason[:200]


# --- who changes a lead, and the record of it ---------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who makes a change, for the lead's history: a person (`user`) or the engine."""

    label: str
    user: Any = None

    @classmethod
    def staff(cls, user) -> "Actor":
        return cls(f"staff {user.get_username()}", user)

    @classmethod
    def cycle(cls, campaign: Campaign) -> "Actor":
        return cls(f"cycle of campaign #{campaign.pk} ({socket.gethostname()}, pid {os.getpid()})")


def lead_event(
    *, lead: Lead, kind: str, actor: Actor, now: datetime, from_status: str = "", to_status: str = "", reason: str = ""
) -> LeadEvent:
    """Record one entry of the lead's history (call it inside the transaction that made the change)."""
    return LeadEvent.objects.create(
        lead=lead, kind=kind, from_status=from_status, to_status=to_status or from_status, reason=reason[:300],
        actor=actor.label[:150], user=actor.user, created_at=now,
    )


def lead_locked(pk: int) -> Lead:
    """The lead, re-read under a row lock (PostgreSQL) or SQLite's write lock: call it inside a
    transaction, write, and no other writer can have changed it in between."""
    return Lead.objects.select_for_update().get(pk=pk)


def lead_as_read(lead: Lead) -> dict:
    """What a writer read of the lead's outreach state, as the condition of its write."""
    return {"status": lead.status, "next_action_at": lead.next_action_at, "attempt_count": lead.attempt_count}


def lead_write_if_unchanged(*, lead: Lead, expect: dict, changes: dict, now: datetime, event: dict | None = None) -> bool:
    """Write `changes` only if the lead's row still holds what the caller read (`expect`), and
    record `event` (lead_event's arguments) with it. False: another writer moved the lead on
    first, and nothing was written: a stale writer changes nothing."""
    with transaction.atomic():
        written = Lead.objects.filter(pk=lead.pk, **expect).update(**changes, updated_at=now)
        if written and event:
            lead_event(lead=lead, now=now, **event)
    return bool(written)


# --- state machine -----------------------------------------------------------------------------
# The functions below apply a rule to a lead in memory; the services that call them hold the
# lead's row lock or write conditionally (see lead_write_if_unchanged), and record an event.


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
    """A contacted lead is QUALIFIED when tagged hot or scored above the campaign's threshold,
    unless the campaign qualifies on replies (then only staff qualify, from the reply)."""
    if campaign.qualify_on == campaign.QualifyOn.REPLY:
        return False
    return lead.hot or lead.score > campaign.qualification_threshold


def lead_record_send(
    *, lead: Lead, campaign: Campaign, now: datetime, next_delay_days: int | None
) -> None:
    """An email reached the server: CONTACTED, or QUALIFIED when hot or above the threshold
    (applied to `lead`, unsaved).

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
        kept = lead.stopped_reason and not lead.stopped_reason.startswith(SENDING_PREFIX)
        _stop(lead, lead.stopped_reason if kept else lead.status.lower())
    elif lead.do_not_contact:
        _stop(lead, "tagged do_not_contact")
    else:
        wait = next_delay_days if next_delay_days is not None else LAST_STEP_REPLY_WAIT_DAYS
        lead.next_action_at = now + followup_delay(wait, lead.score)
        lead.stopped_reason = ""


def lead_record_send_failure(*, lead: Lead, now: datetime, failures: int, error: str, permanent: bool = False) -> None:
    """The email certainly did not leave: the status is unchanged. A temporary refusal is
    retried an hour later, then two; a lead is stopped after MAX_SEND_FAILURES, or at once
    for a permanent problem (applied to `lead`, unsaved). A lead that replied or was stopped
    meanwhile stays as it is."""
    if lead.status not in DUE_STATUSES or lead.do_not_contact:
        return
    if permanent:
        _stop(lead, f"not sent: {error}")
    elif failures >= MAX_SEND_FAILURES:
        _stop(lead, f"{failures} failed sends: {error}")
    else:
        lead.next_action_at = now + timedelta(hours=failures)
        lead.stopped_reason = ""


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


# --- staff changes ------------------------------------------------------------------------------

# Statuses staff may set by hand; the rest follow from outreach.
STAFF_STATUSES = (Status.REPLIED, Status.QUALIFIED, Status.LOST)


@transaction.atomic
def lead_update(*, lead: Lead, data: dict, now: datetime, actor: Actor | None = None) -> Lead:
    """Staff changes to a lead: its details (re-scored), its tags, or its status; each change
    of status or outreach is an event of the lead.

    REPLIED records a reply (follow-ups stop); QUALIFIED and LOST close the lead. Tagging
    do_not_contact stops outreach at once; removing the tag does not restart it (staff resume
    the lead, which checks it may be emailed again). `add_tags` adds to the tags the lead has.
    """
    actor = actor or Actor("staff")
    replied = data.get("status") == Status.REPLIED
    if replied:  # every lead with the address, in id order as the claims take them: no deadlock
        list(Lead.objects.select_for_update().filter(email=lead.email).order_by("pk").values_list("pk"))
    lead = lead_locked(lead.pk)
    before_status, before_due = lead.status, lead.next_action_at
    details = [name for name in ENRICHABLE_FIELDS if name in data]
    for name in details:
        setattr(lead, name, data[name])
    if details and lead.enriched_at:
        lead.score = lead_score(lead)
    if "tags" in data or "add_tags" in data:
        given = [*data.get("tags", lead.tags), *data.get("add_tags", ())]
        tags = list(dict.fromkeys(tag.strip().lower() for tag in given if tag.strip()))
        added, removed = sorted(set(tags) - set(lead.tags)), sorted(set(lead.tags) - set(tags))
        lead.tags = tags
        if added or removed:
            change = ", ".join([*(f"+{t}" for t in added), *(f"-{t}" for t in removed)])
            lead_event(lead=lead, kind=LeadEvent.Kind.TAGGED, actor=actor, now=now, from_status=lead.status,
                       reason=f"tags {change}")
        if lead.do_not_contact and lead.status not in FINAL_STATUSES:
            _stop(lead, "tagged do_not_contact")
    status = data.get("status")
    if status and status not in STAFF_STATUSES:
        raise InvalidTransition(f"staff can set {', '.join(STAFF_STATUSES)}, not {status}")
    if status == Status.REPLIED and lead.status != Status.REPLIED:
        _mark_replied(lead, now)
        lead_event(lead=lead, kind=LeadEvent.Kind.REPLIED, actor=actor, now=now, from_status=before_status,
                   to_status=lead.status, reason="reply recorded")
    if replied:
        _stop_other_sequences(lead, now, actor)
    elif status in (Status.QUALIFIED, Status.LOST) and lead.status != status:
        lead_transition(lead, status)
        _stop(lead, f"marked {status.lower()} by staff")
        lead_event(lead=lead, kind=LeadEvent.Kind.STATUS, actor=actor, now=now, from_status=before_status,
                   to_status=lead.status, reason=f"marked {status.lower()}")
    elif before_due is not None and lead.next_action_at is None:
        lead_event(lead=lead, kind=LeadEvent.Kind.STOPPED, actor=actor, now=now, from_status=before_status,
                   reason=lead.stopped_reason)
    lead.updated_at = now
    lead.save()
    return lead


# What staff record about a lead (console buttons, admin actions): the change each one makes.
OUTCOMES = {
    "replied": {"status": Status.REPLIED},
    "qualified": {"status": Status.QUALIFIED},
    "lost": {"status": Status.LOST},
    "do_not_contact": {"add_tags": [TAG_DO_NOT_CONTACT]},
}


def lead_record_outcome(*, lead: Lead, outcome: str, now: datetime, actor: Actor) -> Lead:
    """A reply, interested (QUALIFIED), not interested (LOST) or do-not-contact, recorded by
    staff through lead_update (row lock, event)."""
    if outcome not in OUTCOMES:
        raise InvalidTransition(f"unknown outcome {outcome!r}: one of {', '.join(OUTCOMES)}")
    return lead_update(lead=lead, data=OUTCOMES[outcome], now=now, actor=actor)


def _stop_other_sequences(lead: Lead, now: datetime, actor: Actor) -> int:
    """A person who replied in one campaign gets no more email from any (SPEC §8): the
    address's leads in other campaigns stop, each with an event. Call with them locked."""
    others = list(
        Lead.objects.filter(email=lead.email, next_action_at__isnull=False).exclude(pk=lead.pk)
        .exclude(status__in=FINAL_STATUSES).order_by("pk").values_list("pk", "status")
    )
    if not others:
        return 0
    reason = f"replied in campaign #{lead.campaign_id}"
    Lead.objects.filter(pk__in=[pk for pk, _ in others]).update(next_action_at=None, stopped_reason=reason,
                                                                updated_at=now)
    LeadEvent.objects.bulk_create(
        LeadEvent(lead_id=pk, kind=LeadEvent.Kind.STOPPED, from_status=status, to_status=status, reason=reason,
                  actor=actor.label[:150], user=actor.user, created_at=now)
        for pk, status in others
    )
    return len(others)


def _mark_replied(lead: Lead, now: datetime) -> None:
    lead_transition(lead, Status.REPLIED)
    lead.replied_at = lead.replied_at or now
    _stop(lead, "replied")


def lead_mark_replied(*, lead: Lead, now: datetime, actor: Actor | None = None) -> Lead:
    """A reply stops all follow-ups."""
    return lead_update(lead=lead, data={"status": Status.REPLIED}, now=now, actor=actor)


# --- what comes back (SPEC §9): the inbox reader's writes, each undone by staff's reclassification ---


def _before(lead: Lead) -> dict:
    """A lead's outreach state as it was, kept on the inbound message that changed it."""
    due = lead.next_action_at.isoformat() if lead.next_action_at else None
    return {"status": lead.status, "next_action_at": due, "stopped_reason": lead.stopped_reason}


@transaction.atomic
def lead_record_reply(*, lead: Lead, now: datetime, actor: Actor, note: str) -> dict:
    """A reply came in: the lead is REPLIED (a QUALIFIED one stays so), every other sequence to
    the address stops, and where a campaign says so, its sequences to the same company domain.
    Returns what changed, for an undo: {"before": state or None, "status": now, "others": n,
    "company": n}."""
    list(Lead.objects.select_for_update().filter(email=lead.email).order_by("pk").values_list("pk"))
    lead = lead_locked(lead.pk)
    before = None
    if lead.status != Status.REPLIED and Status.REPLIED in _TRANSITIONS[lead.status]:
        before = _before(lead)
        _mark_replied(lead, now)
        lead.updated_at = now
        lead.save()
        lead_event(lead=lead, kind=LeadEvent.Kind.REPLIED, actor=actor, now=now, from_status=before["status"],
                   to_status=lead.status, reason=note)
    others = _stop_other_sequences(lead, now, actor)
    return {"before": before, "status": lead.status, "others": others, "company": _stop_company(lead, now, actor)}


def _stop_company(lead: Lead, now: datetime, actor: Actor) -> int:
    """Campaigns with stop_company_on_reply stop their sequences to the replier's company domain.
    Written conditionally, not locked: another reply from the same company may be doing the same."""
    domain = lead.email.rpartition("@")[2]
    if not domain or domain in FREE_MAIL_DOMAINS:
        return 0
    colleagues = (Lead.objects.filter(email__endswith=f"@{domain}", campaign__stop_company_on_reply=True,
                                      next_action_at__isnull=False)
                  .exclude(email=lead.email).exclude(status__in=FINAL_STATUSES))
    reason = f"someone at {domain} replied ({lead.email}, campaign #{lead.campaign_id})"
    stopped = 0
    for colleague in colleagues.order_by("pk")[:1000]:
        stopped += lead_write_if_unchanged(
            lead=colleague, now=now, expect=lead_as_read(colleague),
            changes={"next_action_at": None, "stopped_reason": reason[:200]},
            event={"kind": LeadEvent.Kind.STOPPED, "actor": actor, "from_status": colleague.status, "reason": reason},
        )
    return stopped


@transaction.atomic
def lead_postpone(*, lead: Lead, until: datetime, now: datetime, actor: Actor, reason: str) -> dict | None:
    """The next email waits until `until` (an out-of-office reply): only a lead due sooner,
    in a sequence and not being sent to. Returns the state before, or None if nothing changed."""
    lead = lead_locked(lead.pk)
    if lead.status not in DUE_STATUSES or lead.next_action_at is None or lead.next_action_at >= until:
        return None
    before = _before(lead)
    lead.next_action_at, lead.updated_at = until, now
    lead.save(update_fields=["next_action_at", "updated_at"])
    lead_event(lead=lead, kind=LeadEvent.Kind.POSTPONED, actor=actor, now=now, from_status=lead.status, reason=reason)
    return before


@transaction.atomic
def lead_mark_bounced(*, lead: Lead, now: datetime, actor: Actor, reason: str) -> dict | None:
    """The address bounced hard: the lead is LOST, unless it replied (a person who answered
    is not lost to a later bounce). Returns the state before, or None if nothing changed."""
    lead = lead_locked(lead.pk)
    if lead.status in (Status.REPLIED, Status.LOST):
        return None
    before = _before(lead)
    lead_transition(lead, Status.LOST)
    _stop(lead, reason)
    lead.updated_at = now
    lead.save()
    lead_event(lead=lead, kind=LeadEvent.Kind.STATUS, actor=actor, now=now, from_status=before["status"],
               to_status=lead.status, reason=reason)
    return before


@transaction.atomic
def lead_undo(*, lead: Lead, before: dict, expect_status: str, expect_due: datetime | None, now: datetime,
              actor: Actor, reason: str) -> bool:
    """Put a lead back as `before` (see _before) when staff reclassify the message that changed
    it, only if it is still as that message left it (`expect_status`, `expect_due`): anything
    that happened since wins. A due time gone by meanwhile becomes now."""
    lead = lead_locked(lead.pk)
    if lead.status != expect_status or lead.next_action_at != expect_due:
        return False
    due = datetime.fromisoformat(before["next_action_at"]) if before.get("next_action_at") else None
    was = lead.status
    lead.status = before["status"]
    lead.next_action_at = max(due, now) if due else None
    lead.stopped_reason = before.get("stopped_reason", "")
    if was == Status.REPLIED:
        lead.replied_at = None
    lead.updated_at = now
    lead.save()
    lead_event(lead=lead, kind=LeadEvent.Kind.STATUS, actor=actor, now=now, from_status=was, to_status=lead.status,
               reason=reason)
    return True


def lead_tag_add(*, lead: Lead, tag: str, now: datetime | None = None, actor: Actor | None = None) -> Lead:
    """Tagging a lead do_not_contact stops its outreach at once, not at its next due time."""
    return lead_update(lead=lead, data={"add_tags": [tag]}, now=now or timezone.now(), actor=actor)


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


# What enrichment writes; a lead still NEW and unchanged since it was read takes all of them.
_ENRICHMENT_WRITES = (*ENRICHABLE_FIELDS, "enrichment", "email_verification", "email_valid", "score", "status",
                      "enriched_at", "next_action_at", "stopped_reason", "enrichment_request", "updated_at")


def leads_enrich(
    *, campaign: Campaign, now: datetime, limit: int, actor: Actor | None = None, deadline: float | None = None
) -> PhaseResult:
    """Enrich, verify and score up to `limit` NEW leads of the campaign, oldest first.

    With DROPCONTACT_API_KEY set, a lead is enriched once Dropcontact's results for it are in
    (leads.dropcontact_enrichment): until then it stays NEW, and is not emailed. Enrichment runs
    outside any transaction (enrichers call slow services); what it found is written only to
    leads that are still NEW and unchanged since they were read, under their row locks. A lead
    another cycle enriched and emailed meanwhile, or that staff changed, is left as it is now
    (it is never sent back to ENRICHED and due again).
    """
    result = PhaseResult()
    actor = actor or Actor.cycle(campaign)
    new = Lead.objects.filter(campaign=campaign, status=Status.NEW)
    provided: dict[int, dict] = {}
    if settings.DROPCONTACT_API_KEY:
        run = dropcontact_run(campaign=campaign, now=now, limit=limit, deadline=deadline)
        result.notes += run.notes
        result.errors += [f"dropcontact enrichment: {error}" for error in run.errors]
        provided = run.results
        # Every lead whose results came in, whatever `limit`: left NEW, it would be submitted (paid for) again.
        leads = list(new.filter(pk__in=[*run.results, *run.given_up]).order_by("created_at", "id"))
    else:
        leads = list(new.order_by("created_at", "id")[:limit])
    if not leads:
        return result
    if not settings.DROPCONTACT_API_KEY:
        result.notes.append("dropcontact enrichment skipped: DROPCONTACT_API_KEY is not set")
    as_read = {lead.pk: lead.updated_at for lead in leads}
    found_by_enricher = []
    for name, enrich in ENRICHERS.items():
        try:
            found_by_enricher.append(enrich(leads))
        except Exception as exc:
            logger.exception("enricher %s failed for campaign %s", name, campaign.pk)
            result.errors.append(f"{name} enrichment: {exc}")
    replaced: dict[int, str] = {}
    for lead in leads:
        verification = _dropcontact_verdict(lead, provided.get(lead.pk), replaced)
        lead_apply_enrichment(
            lead=lead,
            found=[found[lead.pk] for found in found_by_enricher if lead.pk in found],
            verification=verification or email_verify(lead.email),
            now=now,
        )
        lead.enrichment_request = None
    with transaction.atomic():
        unchanged = {
            pk for pk, updated_at in Lead.objects.select_for_update()
            .filter(pk__in=as_read, status=Status.NEW).order_by("pk").values_list("pk", "updated_at")
            if as_read[pk] == updated_at
        }
        fresh = [lead for lead in leads if lead.pk in unchanged and _email_write(lead, replaced, result)]
        Lead.objects.bulk_update(fresh, _ENRICHMENT_WRITES, batch_size=200)
        events = []
        for lead in fresh:
            score = f"score {lead.score:g}"
            if lead.pk in replaced:
                score += f"; address {replaced[lead.pk]} replaced by {lead.email} (Dropcontact)"
            events.append(LeadEvent(lead=lead, kind=LeadEvent.Kind.ENRICHED, from_status=Status.NEW,
                                    to_status=lead.status, reason=score[:300], actor=actor.label, created_at=now))
            if lead.next_action_at is None and lead.stopped_reason:
                events.append(LeadEvent(lead=lead, kind=LeadEvent.Kind.STOPPED, from_status=lead.status,
                                        to_status=lead.status, reason=lead.stopped_reason, actor=actor.label,
                                        created_at=now))
        LeadEvent.objects.bulk_create(events)
    if len(fresh) < len(leads):
        result.notes.append(f"{len(leads) - len(fresh)} lead(s) changed while being enriched: left as they are now")
    result.count = sum(1 for lead in fresh if lead.status == Status.ENRICHED)
    return result


def _dropcontact_verdict(lead: Lead, found: dict | None, replaced: dict[int, str]) -> dict | None:
    """Apply Dropcontact's result to `lead`; its verdict on the address, if it gave one. A
    replacement address that is suppressed, already a lead of the campaign, or not usable is
    not taken: the lead keeps its own, found invalid."""
    if not found:
        return None
    own = lead.email
    verdict = dropcontact_apply(lead=lead, result=found)
    if verdict.get("replaced"):
        candidate = email_normalise(lead.email)
        blocked = (email_syntax_error(candidate) or not candidate.rpartition("@")[0].isascii()
                   or Suppression.objects.filter(email=candidate).exists()
                   or Lead.objects.filter(campaign_id=lead.campaign_id, email=candidate).exists())
        if blocked:
            lead.email = own
            return {"valid": False, "reason": f"Dropcontact: {verdict['replaced_qualification'] or 'not verified'}",
                    "checked_by": "dropcontact", "qualification": verdict["replaced_qualification"]}
        lead.email = candidate
        replaced[lead.pk] = own
    if verdict:
        lead.enrichment["dropcontact"] = {"emails": found["emails"], **{k: v for k, v in found["fields"].items() if v}}
    return verdict or None


def _email_write(lead: Lead, replaced: dict[int, str], result: PhaseResult) -> bool:
    """Give the lead the address Dropcontact found, where it is still free; False (the lead is
    not written this cycle) when another lead of the campaign took it meanwhile."""
    if lead.pk not in replaced:
        return True
    try:
        with transaction.atomic():
            Lead.objects.filter(pk=lead.pk).update(email=lead.email)
    except IntegrityError:
        result.notes.append(f"{lead.email}: Dropcontact's address for lead {lead.pk} is already a lead: left as it is")
        return False
    return True
