"""Dropcontact enrichment in the cycle (SPEC §10), against a local server: leads.fake_providers
for whole cycles, conftest's ProviderReplay for each way Dropcontact can fail."""

import json
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from io import StringIO

import pytest
from django.core.management import call_command

from campaigns.cycle import cycle_run
from campaigns.tests.factories import CampaignFactory
from leads.models import ApiUsage, EnrichmentRequest, Lead, LeadEvent, LeadSource
from leads.services import leads_enrich
from leads.tests.factories import LeadFactory, LeadSourceFactory
from outreach.models import Suppression

pytestmark = pytest.mark.django_db

SUBMIT = "/v1/enrich/all"
NOT_READY = {"success": False, "reason": "Request not ready yet, try again in 30 seconds"}
Status = Lead.Status
IMPORTED = datetime(2026, 3, 10, 9, 0, tzinfo=dt_timezone.utc)


@pytest.fixture(autouse=True)
def _quick_polls(settings):
    settings.CAM_DROPCONTACT_POLL_SECONDS = 0.05
    settings.CAM_DROPCONTACT_WAIT_SECONDS = 0.3


def new_lead(campaign, email, **fields):
    """A NEW lead as an import leaves it, due before conftest's `now`."""
    return LeadFactory(campaign=campaign, email=email, status=Status.NEW, score=0, email_valid=None, enrichment={},
                       enriched_at=None, job_title="", company_size="", industry="", created_at=IMPORTED, **fields)


def contact(email, qualification="nominative@pro", **more):
    return {"email": [{"email": email, "qualification": qualification}], "job": "CTO", "nb_employees": "11-50",
            "naf5_des": "Software publishing", "website": "https://firm.example",
            "linkedin": "https://linkedin.com/in/x", **more}


def test_a_cycle_discovers_with_apollo_then_enriches_and_verifies_through_dropcontact(fake_providers, settings):
    settings.CAM_DROPCONTACT_WAIT_SECONDS = 5
    campaign = CampaignFactory(apollo_credits_per_day=100, dropcontact_credits_per_day=100)
    LeadSourceFactory(campaign=campaign, name="Apollo", kind=LeadSource.Kind.APOLLO,
                      settings={"person_titles": ["CEO"], "per_cycle": 10})
    out = StringIO()

    call_command("run_cam_cycle", "--campaign-id", str(campaign.pk), "--json", stdout=out)

    result = json.loads(out.getvalue())
    assert result["errors"] == [] and result["leads_discovered"] == 9  # person 6 has no address
    assert result["leads_enriched"] == 9
    request = EnrichmentRequest.objects.get()
    assert fake_providers.calls[f"POST {SUBMIT}"] == 1
    assert fake_providers.calls[f"GET /v1/enrich/all/{request.request_id}"] == 2 and request.status == "done"
    leads = {lead.external_id: lead for lead in Lead.objects.filter(campaign=campaign)}
    maya = leads["apollo:fake00000"]
    assert (maya.status, maya.email_valid, maya.email_verification["qualification"]) == (
        Status.ENRICHED, True, "nominative@pro")
    assert maya.linkedin_url == "https://www.linkedin.com/in/maya-chen-0"  # Apollo's kept, not overwritten
    assert maya.enrichment["dropcontact"]["industry"] == "Programmation informatique"
    assert maya.enrichment_request is None and maya.score > 0.3
    # The fake finds every ninth address invalid: not emailed.
    eighth = leads["apollo:fake00008"]
    assert (eighth.email_valid, eighth.next_action_at) == (False, None)
    assert "Dropcontact: invalid" in eighth.stopped_reason
    assert len(result["previews"]) == 8 and eighth.email not in json.dumps(result["previews"])
    usage = ApiUsage.objects.get(campaign=campaign, provider="dropcontact")
    assert (usage.endpoint, usage.credits, usage.outcome, usage.response["request_id"]) == (
        "enrich/all", 9, "done", request.request_id)


def test_leads_whose_results_are_not_ready_wait_unsent_and_are_not_submitted_again(provider_replay, now):
    campaign = CampaignFactory()
    ann, bob = new_lead(campaign, "ann@firm.example"), new_lead(campaign, "bob@firm.example")
    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-1", "success": True, "credits_left": 10})
    for _ in range(20):
        provider_replay.answer("GET", "/v1/enrich/all/r-1", body=NOT_READY)

    first = cycle_run(campaign=campaign, now=now, dry_run=True)

    ann.refresh_from_db()
    assert (first.leads_enriched, first.previews, ann.status) == (0, [], Status.NEW)
    assert ann.enrichment_request.request_id == "r-1"
    assert "2 lead(s) wait for Dropcontact's results: asked for again next cycle" in first.notes
    provider_replay.answers[("GET", "/v1/enrich/all/r-1")] = [
        (200, {"success": True, "data": [contact("ann@firm.example"), contact("bob@firm.example", "invalid")]}, {}, 0)]

    second = cycle_run(campaign=campaign, now=now + timedelta(minutes=15), dry_run=True)

    ann.refresh_from_db(), bob.refresh_from_db()
    assert [r["path"] for r in provider_replay.requests].count(SUBMIT) == 1
    assert second.leads_enriched == 2 and [p["email"] for p in second.previews] == ["ann@firm.example"]
    assert (ann.job_title, ann.company_size, ann.industry, ann.website) == (
        "CTO", "11-50", "Software publishing", "https://firm.example")
    assert (bob.email_valid, bob.next_action_at) == (False, None)
    assert LeadEvent.objects.filter(lead=ann, kind=LeadEvent.Kind.ENRICHED).count() == 1


def test_the_daily_budget_caps_what_is_submitted_and_the_rest_waits_for_tomorrow(provider_replay, now):
    campaign = CampaignFactory(dropcontact_credits_per_day=3)
    for i in range(5):
        new_lead(campaign, f"p{i}@firm.example")
    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-1", "success": True})
    provider_replay.answer("GET", "/v1/enrich/all/r-1", body=NOT_READY)
    provider_replay.answer("GET", "/v1/enrich/all/r-1", body=NOT_READY)
    provider_replay.answer("GET", "/v1/enrich/all/r-1", body=NOT_READY)

    result = leads_enrich(campaign=campaign, now=now, limit=100)

    assert len(provider_replay.requests[0]["body"]["data"]) == 3
    assert "the campaign's Dropcontact budget of 3 credits a day is used: 2 lead(s) wait for tomorrow" in result.notes
    assert EnrichmentRequest.objects.get().lead_ids == list(
        Lead.objects.filter(email__in=["p0@firm.example", "p1@firm.example", "p2@firm.example"])
        .order_by("created_at", "id").values_list("pk", flat=True))


@pytest.mark.parametrize(("status", "body", "delay", "outcome", "credits", "words"), [
    (401, {"error": True, "reason": "Invalid token"}, 0, "refused", 0, "the API key was refused (401)"),
    (403, {"error": True, "reason": "Not enough credits"}, 0, "refused", 0, "refused for the plan or credits (403)"),
    (429, {"error": True}, 0, "refused", 0, "rate limited (429)"),
    (500, {}, 0, "refused", 0, "server error 500"),
    (200, b"{oops", 0, "unknown", 2, "the answer is not JSON"),  # answered, so maybe charged
    (200, {"success": False, "error": True, "reason": "bad data"}, 0, "refused", 0, "the request was not accepted"),
    (200, {"request_id": "late", "success": True}, 1.5, "unknown", 2, "no answer within 1 s"),
])
def test_a_failed_submission_is_the_cycles_error_and_the_leads_are_submitted_next_cycle(
        provider_replay, now, status, body, delay, outcome, credits, words):
    campaign = CampaignFactory()
    ann = new_lead(campaign, "ann@firm.example")
    new_lead(campaign, "bob@firm.example")
    provider_replay.answer("POST", SUBMIT, status=status, body=body, delay=delay)

    result = leads_enrich(campaign=campaign, now=now, limit=100)

    ann.refresh_from_db()
    assert len(result.errors) == 1 and words in result.errors[0] and "dropcontact-secret" not in result.errors[0]
    assert (ann.status, ann.enrichment_request) == (Status.NEW, None)
    usage = ApiUsage.objects.get()
    assert (usage.outcome, usage.credits) == (outcome, credits)

    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-2", "success": True})
    provider_replay.answer("GET", "/v1/enrich/all/r-2", body={
        "success": True, "data": [contact("ann@firm.example"), contact("bob@firm.example")]})
    retried = leads_enrich(campaign=campaign, now=now, limit=100)

    assert (retried.errors, retried.count) == ([], 2)


def test_a_server_error_while_asking_for_results_keeps_the_request_and_an_unknown_one_is_given_up(provider_replay, now):
    campaign = CampaignFactory()
    ann = new_lead(campaign, "ann@firm.example")
    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-1", "success": True})
    provider_replay.answer("GET", "/v1/enrich/all/r-1", status=502, body=b"bad gateway")
    provider_replay.answer("GET", "/v1/enrich/all/r-1", status=502, body=b"bad gateway")

    kept = leads_enrich(campaign=campaign, now=now, limit=100)

    ann.refresh_from_db()
    assert "server error 502: request r-1 is asked for again next cycle" in kept.errors[0]
    assert ann.status == Status.NEW and ann.enrichment_request.status == "pending"
    provider_replay.answer("GET", "/v1/enrich/all/r-1", status=404, body={"error": True, "reason": "Request not found"})

    gone = leads_enrich(campaign=campaign, now=now, limit=100)

    ann.refresh_from_db()
    assert any("given up" in note for note in gone.notes)
    assert (ann.status, ann.email_valid, ann.email_verification.get("checked_by")) == (Status.ENRICHED, True, None)


def test_a_request_never_ready_is_given_up_after_a_day(provider_replay, now, settings):
    campaign = CampaignFactory()
    new_lead(campaign, "ann@firm.example")
    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-1", "success": True})
    for _ in range(10):
        provider_replay.answer("GET", "/v1/enrich/all/r-1", body=NOT_READY)
    leads_enrich(campaign=campaign, now=now, limit=100)

    later = leads_enrich(campaign=campaign, now=now + timedelta(hours=settings.CAM_DROPCONTACT_GIVE_UP_HOURS, seconds=1),
                         limit=100)

    assert later.count == 1 and EnrichmentRequest.objects.get().status == "failed"


def test_an_invalid_address_is_replaced_by_the_professional_one_found_unless_it_is_taken(provider_replay, now):
    campaign = CampaignFactory()
    ann = new_lead(campaign, "ann@old.example")
    bob = new_lead(campaign, "bob@old.example")
    cat = new_lead(campaign, "cat@old.example")
    new_lead(campaign, "bob@firm.example").delete()  # a lead once; only the live ones count
    LeadFactory(campaign=campaign, email="bob.b@firm.example")
    Suppression.objects.create(email="cat.c@firm.example", reason="unsubscribed")
    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-1", "success": True})
    found = {"ann@old.example": "ann.a@firm.example", "bob@old.example": "bob.b@firm.example",
             "cat@old.example": "cat.c@firm.example"}
    provider_replay.answer("GET", "/v1/enrich/all/r-1", body={"success": True, "data": [
        {**contact(old), "email": [{"email": old, "qualification": "invalid"},
                                   {"email": new, "qualification": "nominative@pro"}]}
        for old, new in found.items()]})

    leads_enrich(campaign=campaign, now=now, limit=100)

    ann.refresh_from_db(), bob.refresh_from_db(), cat.refresh_from_db()
    assert (ann.email, ann.email_valid, ann.status) == ("ann.a@firm.example", True, Status.ENRICHED)
    assert "replaced by ann.a@firm.example" in ann.events.get(kind=LeadEvent.Kind.ENRICHED).reason
    assert (bob.email, bob.email_valid) == ("bob@old.example", False)  # the other is a lead already
    assert (cat.email, cat.email_valid) == ("cat@old.example", False)  # the other is suppressed


def test_results_in_another_order_or_number_are_matched_by_address(provider_replay, now):
    campaign = CampaignFactory()
    ann, bob = new_lead(campaign, "ann@firm.example"), new_lead(campaign, "bob@firm.example")
    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-1", "success": True})
    provider_replay.answer("GET", "/v1/enrich/all/r-1", body={"success": True, "data": [
        contact("bob@firm.example", job="CFO")]})

    leads_enrich(campaign=campaign, now=now, limit=100)

    ann.refresh_from_db(), bob.refresh_from_db()
    assert (bob.job_title, bob.email_verification["qualification"]) == ("CFO", "nominative@pro")
    assert (ann.status, ann.job_title, ann.email_verification.get("checked_by")) == (Status.ENRICHED, "", None)


def test_a_request_id_given_twice_is_an_error_and_the_leads_are_not_tied_to_the_old_request(provider_replay, now):
    campaign = CampaignFactory()
    new_lead(campaign, "ann@firm.example")
    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-1", "success": True})
    provider_replay.answer("GET", "/v1/enrich/all/r-1", body={"success": True, "data": [contact("ann@firm.example")]})
    leads_enrich(campaign=campaign, now=now, limit=100)
    bob = new_lead(campaign, "bob@firm.example")
    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-1", "success": True})

    again = leads_enrich(campaign=campaign, now=now, limit=100)

    bob.refresh_from_db()
    assert again.errors == ["dropcontact enrichment: Dropcontact: answered request id 'r-1', which it gave before: "
                            "the leads wait for the next cycle"]
    assert (bob.status, bob.enrichment_request) == (Status.NEW, None)


def test_every_lead_whose_results_came_in_is_enriched_whatever_the_cycles_limit(provider_replay, now):
    campaign = CampaignFactory()
    ann, bob = new_lead(campaign, "ann@firm.example"), new_lead(campaign, "bob@firm.example")
    for request_id in ("r-1", "r-2"):
        provider_replay.answer("POST", SUBMIT, body={"request_id": request_id, "success": True})
        provider_replay.answer("GET", f"/v1/enrich/all/{request_id}", body=NOT_READY)
    leads_enrich(campaign=campaign, now=now, limit=1)
    leads_enrich(campaign=campaign, now=now, limit=1)
    provider_replay.answer("GET", "/v1/enrich/all/r-1", body={"success": True, "data": [contact("ann@firm.example")]})
    provider_replay.answer("GET", "/v1/enrich/all/r-2", body={"success": True, "data": [contact("bob@firm.example")]})

    result = leads_enrich(campaign=campaign, now=now, limit=1)

    ann.refresh_from_db(), bob.refresh_from_db()
    assert result.count == 2 and (ann.status, bob.status) == (Status.ENRICHED, Status.ENRICHED)
    assert [r["path"] for r in provider_replay.requests].count(SUBMIT) == 2
