"""Dropcontact enrichment (SPEC §10): NEW leads are submitted in batches of at most 250 within
the campaign's daily Dropcontact budget, and their results are asked for until ready.

- A submitted lead points to its EnrichmentRequest while it is pending: it stays NEW (so it is
  not emailed) and is not submitted again. A request not ready within the cycle's wait is asked
  for by the next cycle; one still not ready after CAM_DROPCONTACT_GIVE_UP_HOURS is given up and
  its leads are enriched without Dropcontact.
- The results fill a lead's blank job title, company size, industry, website and LinkedIn, and
  give the verdict on its address: Dropcontact's qualification. An address it finds invalid is
  replaced by a professional one it found for the same person, when there is one.
- A submission costs a credit per lead (each is sent with its address, which Dropcontact
  verifies): reserved before the call, settled with the answer (leads.credits).
- A wrong key, no credits left, rate limiting, a server error, a timeout or a malformed answer
  is an error of the cycle; the leads wait for the next one. Nothing here raises for them.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from cam_project.validators import has_control_characters
from campaigns.models import Campaign
from leads.clients import dropcontact
from leads.clients.http import BadAnswer, ProviderError, Unavailable
from leads.credits import Outcome, Provider, credits_reserve, credits_settle
from leads.models import EnrichmentRequest, Lead

logger = logging.getLogger(__name__)

Status = Lead.Status
# Qualifications of an address Dropcontact verified (sent or found) that is emailed.
DELIVERABLE = ("nominative@pro", "catch_all@pro", "nominative@perso", "catch_all@perso")
FILLED_FIELDS = ("job_title", "company_size", "industry", "website", "linkedin_url", "company")


@dataclass
class DropcontactRun:
    """The results that came in ({lead id: what Dropcontact said}), the leads of requests given
    up (enriched without it), and what to tell the cycle."""

    results: dict[int, dict] = field(default_factory=dict)
    given_up: set[int] = field(default_factory=set)
    submitted: int = 0
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def dropcontact_run(*, campaign: Campaign, now: datetime, limit: int, deadline: float | None = None,
                    session: requests.Session | None = None) -> DropcontactRun:
    """Collect the results of the campaign's pending requests, submit up to `limit` NEW leads
    not yet submitted, and wait a while (never past `deadline`, a time.monotonic()) for them."""
    run = DropcontactRun()
    wait_until = time.monotonic() + settings.CAM_DROPCONTACT_WAIT_SECONDS
    if deadline is not None:
        wait_until = min(wait_until, deadline)
    with session or requests.Session() as http:
        if not _collect(campaign, now, http, run, deadline):
            return run
        try:
            _submit(campaign, now, limit, http, run)
        except ProviderError as exc:
            run.errors.append(f"{exc}: the leads wait for the next cycle")
        while run.submitted and _pending(campaign).exists() and time.monotonic() < wait_until:
            time.sleep(max(0.0, min(settings.CAM_DROPCONTACT_POLL_SECONDS, wait_until - time.monotonic())))
            if not _collect(campaign, now, http, run, deadline):
                break
    waiting = dropcontact_waiting(Lead.objects.filter(campaign=campaign, status=Status.NEW)).count()
    if waiting:
        run.notes.append(f"{waiting} lead(s) wait for Dropcontact's results: asked for again next cycle")
    return run


def dropcontact_waiting(leads, pending: bool = True):
    """The leads whose Dropcontact request is pending (or, `pending=False`, the others)."""
    waiting = Q(enrichment_request__status=EnrichmentRequest.Status.PENDING)
    return leads.filter(waiting) if pending else leads.exclude(waiting)


def _pending(campaign: Campaign):
    return EnrichmentRequest.objects.filter(campaign=campaign, provider=Provider.DROPCONTACT,
                                            status=EnrichmentRequest.Status.PENDING)


def _collect(campaign, now, http, run: DropcontactRun, deadline: float | None) -> bool:
    """Ask for the results of each pending request; False when Dropcontact cannot be asked now
    (or the cycle's time is up)."""
    give_up_before = now - timedelta(hours=settings.CAM_DROPCONTACT_GIVE_UP_HOURS)
    for request in _pending(campaign).order_by("submitted_at", "id"):
        if deadline is not None and time.monotonic() >= deadline:
            run.notes.append("the cycle's time budget is used: Dropcontact's results are asked for next cycle")
            return False
        try:
            results = dropcontact.enrich_results(request_id=request.request_id, session=http)
        except (BadAnswer, Unavailable) as exc:
            if request.submitted_at < give_up_before or (isinstance(exc, BadAnswer) and exc.status == 404):
                _request_end(request, now, run, failed=f"given up: {exc}")
            else:
                _request_polled(request, now, str(exc))
                run.errors.append(f"{exc}: request {request.request_id} is asked for again next cycle")
            continue
        except ProviderError as exc:  # key refused, out of credits, rate limited: stop asking
            run.errors.append(f"{exc}: the results are asked for again next cycle")
            return False
        if results.ready:
            _request_end(request, now, run, rows=results.data)
        elif request.submitted_at < give_up_before:
            _request_end(request, now, run, failed=f"given up: not ready after {settings.CAM_DROPCONTACT_GIVE_UP_HOURS:g} h")
        else:
            _request_polled(request, now, results.reason)
    return True


def _request_polled(request: EnrichmentRequest, now: datetime, note: str) -> None:
    EnrichmentRequest.objects.filter(pk=request.pk).update(polled_at=now, polls=request.polls + 1, note=note[:300])


def _request_end(request: EnrichmentRequest, now: datetime, run: DropcontactRun, *, rows=None, failed: str = "") -> None:
    """Mark the request done (or failed) once, and hand its leads' results to the enrichment."""
    results = {} if failed else _rows_by_lead(request, rows)  # read before the request is marked done
    ended = EnrichmentRequest.objects.filter(pk=request.pk, status=EnrichmentRequest.Status.PENDING).update(
        status=EnrichmentRequest.Status.FAILED if failed else EnrichmentRequest.Status.DONE,
        finished_at=now, polled_at=now, polls=request.polls + 1, note=failed[:300])
    if not ended:  # another run ended it first
        return
    if failed:
        run.given_up.update(request.lead_ids)
        run.notes.append(f"Dropcontact request {request.request_id} {failed}: its leads are enriched without it")
        return
    run.results.update(results)


def _rows_by_lead(request: EnrichmentRequest, rows: list[dict]) -> dict[int, dict]:
    """Results come back in the order sent; when their number differs, by address."""
    if len(rows) == len(request.lead_ids):
        return {lead_id: dropcontact_result(row) for lead_id, row in zip(request.lead_ids, rows)}
    by_email = dict(Lead.objects.filter(pk__in=request.lead_ids).values_list("email", "pk"))
    found = {}
    for row in rows:
        for email in (entry["email"] for entry in dropcontact_result(row)["emails"]):
            if email in by_email:
                found[by_email[email]] = dropcontact_result(row)
                break
    return {lead_id: found.get(lead_id, {"missing": True}) for lead_id in request.lead_ids}


def dropcontact_result(row: dict) -> dict:
    """One contact's results: the lead fields it gives, and every address with its qualification."""
    emails = [{"email": e["email"].strip().lower()[:320], "qualification": str(e.get("qualification") or "")[:50]}
              for e in (row.get("email") if isinstance(row.get("email"), list) else [])
              if isinstance(e, dict) and isinstance(e.get("email"), str) and e["email"].strip()]
    return {"fields": dropcontact.result_fields(row), "emails": emails}


def _submit(campaign: Campaign, now: datetime, limit: int, http, run: DropcontactRun) -> None:
    """Submit NEW leads never submitted, oldest first, in batches within the daily budget."""
    unsent = dropcontact_waiting(Lead.objects.filter(campaign=campaign, status=Status.NEW), pending=False)
    # Leads whose results just came in are enriched now, not submitted again.
    unsent = unsent.exclude(pk__in=[*run.results, *run.given_up])
    leads = list(unsent.order_by("created_at", "id")[:limit])
    while leads:
        batch = leads[: dropcontact.SUBMIT_BATCH]
        usage = credits_reserve(campaign=campaign, provider=Provider.DROPCONTACT, endpoint="enrich/all",
                                wanted=len(batch), now=now)
        if usage is None:
            run.notes.append(f"the campaign's Dropcontact budget of {campaign.dropcontact_credits_per_day} credits "
                             f"a day is used: {len(leads)} lead(s) wait for tomorrow")
            return
        batch = batch[: usage.credits]
        try:
            request_id = dropcontact.enrich_submit(contacts=[dropcontact.contact_body(lead) for lead in batch],
                                                   session=http)
        except ProviderError as exc:
            credits_settle(usage=usage, now=now, outcome=Outcome.UNKNOWN if exc.maybe_charged else Outcome.REFUSED,
                           error=str(exc))
            raise
        credits_settle(usage=usage, now=now, outcome=Outcome.DONE, charged=len(batch),
                       response={"request_id": request_id, "contacts": len(batch)})
        try:
            with transaction.atomic():  # the request and its leads' link to it, together
                request = EnrichmentRequest.objects.create(
                    campaign=campaign, provider=Provider.DROPCONTACT, request_id=request_id,
                    lead_ids=[lead.pk for lead in batch], submitted_at=now)
                Lead.objects.filter(pk__in=[lead.pk for lead in batch], status=Status.NEW).update(
                    enrichment_request=request, updated_at=now)
        except IntegrityError:
            raise BadAnswer(dropcontact.NAME, f"answered request id {request_id[:100]!r}, which it gave before") from None
        run.submitted += len(batch)
        leads = leads[len(batch):]


def dropcontact_apply(*, lead: Lead, result: dict) -> dict:
    """What Dropcontact's result does to `lead` (unsaved): blank fields filled, and the verdict
    on its address, as email_verify's result (valid, reason, …), or {} when it gave none. An
    address found invalid is replaced by a deliverable professional address Dropcontact found
    (`lead.email` set; the caller writes it only where it is free)."""
    if result.get("missing"):
        return {}
    for name, value in result["fields"].items():
        # What imports refuse in a field (line breaks, escapes) is not taken from Dropcontact either.
        if name in FILLED_FIELDS and value and not getattr(lead, name) and not has_control_characters(value):
            setattr(lead, name, value[: Lead._meta.get_field(name).max_length])
    qualifications = {e["email"]: e["qualification"] for e in result["emails"]}
    own = qualifications.get(lead.email)
    if own is None or own == "invalid":
        better = next((e for e in result["emails"] if e["qualification"] in ("nominative@pro", "catch_all@pro")
                       and e["email"] != lead.email), None)
        if better:
            replaced = lead.email
            lead.email = better["email"]
            return {"valid": True, "reason": "", "checked_by": "dropcontact", "qualification": better["qualification"],
                    "replaced": replaced, "replaced_qualification": own or ""}
    if own is None:
        return {}
    valid = own in DELIVERABLE
    return {"valid": valid, "reason": "" if valid else f"Dropcontact: {own}", "checked_by": "dropcontact",
            "qualification": own}
