"""The Apollo.io lead source in the cycle (SPEC §10), against a local server: leads.fake_providers
for whole cycles, conftest's ProviderReplay for each way Apollo can fail."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from campaigns.tests.factories import CampaignFactory
from leads.apollo_source import PAGE_SIZE, apollo_discover, apollo_settings_clean
from leads.credits import credits_used
from leads.importing import leads_discover
from leads.models import ApiUsage, Lead, LeadSource
from leads.tests.factories import LeadFactory, LeadSourceFactory

pytestmark = pytest.mark.django_db

SEARCH, REVEAL = "/api/v1/mixed_people/api_search", "/api/v1/people/bulk_match"
FILTERS = {"person_titles": ["CEO", "Head of Growth"], "person_seniorities": ["c_suite", "head"],
           "organization_num_employees_ranges": ["11,20", "21,50"]}


def apollo_source(campaign, **settings):
    return LeadSourceFactory(campaign=campaign, name="Apollo", kind=LeadSource.Kind.APOLLO,
                             settings={**FILTERS, **settings})


def cycle(campaign) -> dict:
    out = StringIO()
    call_command("run_cam_cycle", "--campaign-id", str(campaign.pk), "--json", stdout=out)
    return json.loads(out.getvalue())


def person(i):
    return {"id": f"p{i}", "first_name": f"First{i}", "last_name": "Doe", "title": "CEO",
            "organization": {"name": f"Org{i}"}}


def match(i, email=True):
    return {**person(i), "email": f"first{i}@org{i}.example" if email else None, "email_status": "verified",
            "city": "Lyon", "country": "France", "time_zone": "Europe/Paris",
            "organization": {"name": f"Org{i}", "estimated_num_employees": 40, "industry": "software"}}


def search_page(people, page=1, total_pages=1):
    return {"people": people, "pagination": {"page": page, "per_page": PAGE_SIZE, "total_entries": 999,
                                             "total_pages": total_pages}}


# --- whole cycles ---------------------------------------------------------------------------------


def test_a_cycle_reveals_the_people_of_its_search_and_the_next_goes_on_where_it_stopped(fake_providers):
    campaign = CampaignFactory(apollo_credits_per_day=100)
    source = apollo_source(campaign, per_cycle=12)

    first = cycle(campaign)

    # Person 6 (i % 7 == 6) is revealed without an address: counted, paid for, not inserted.
    assert first["errors"] == [] and first["leads_discovered"] == 11
    assert "source Apollo: 12 people revealed for 12 Apollo credits, 1 without an email (not inserted), " \
           "11 new leads" in first["notes"]
    assert fake_providers.revealed_ids == [f"fake{i:05d}" for i in range(12)]
    maya = Lead.objects.get(campaign=campaign, external_id="apollo:fake00000")
    assert (maya.email, maya.first_name, maya.last_name, maya.job_title) == (
        "maya.chen0@company0000.example", "Maya", "Chen", "CEO")
    assert (maya.company, maya.industry, maya.city, maya.country, maya.timezone) == (
        "Company0000", "computer software", "Paris", "France", "Europe/Paris")
    assert maya.linkedin_url == "https://www.linkedin.com/in/maya-chen-0"
    assert maya.website == "https://company0000.example"
    assert maya.source == source and maya.source_data["apollo"]["id"] == "fake00000"
    assert maya.origin == f"Apollo.io people search (source “{source}”)" and maya.collected_at
    usage = list(ApiUsage.objects.filter(campaign=campaign, provider="apollo").order_by("id"))
    assert [(u.provider, u.endpoint, u.asked, u.credits, u.outcome) for u in usage] == [
        ("apollo", "people/bulk_match", 10, 10, "done"), ("apollo", "people/bulk_match", 2, 2, "done")]
    assert "@" not in json.dumps(usage[0].response)  # the addresses live on the leads only
    source.refresh_from_db()
    assert (source.state["page"], source.state["index"], source.last_error) == (1, 12, "")

    second = cycle(campaign)

    assert second["leads_discovered"] == 10  # persons 13 and 20 have no address
    assert fake_providers.revealed_ids[12:] == [f"fake{i:05d}" for i in range(12, 24)]
    assert Lead.objects.filter(campaign=campaign).count() == 21
    assert credits_used(campaign=campaign, provider="apollo", day=usage[0].day) == 24


def test_a_search_read_to_its_end_is_exhausted_and_says_so(fake_providers, now):
    fake_providers.people = fake_providers.people[:PAGE_SIZE + 5]
    fake_providers.by_id = {p["id"]: p for p in fake_providers.people}
    campaign = CampaignFactory(apollo_credits_per_day=1000)
    source = apollo_source(campaign, per_cycle=1000)

    run = apollo_discover(source=source, now=now, limit=1000)

    assert run.revealed == PAGE_SIZE + 5 and "the search is exhausted: every person it finds was handled" in run.notes
    assert source.state["exhausted"] is True
    searches = fake_providers.calls[f"POST {SEARCH}"]
    again = apollo_discover(source=source, now=now, limit=1000)
    assert again.revealed == 0 and fake_providers.calls[f"POST {SEARCH}"] == searches
    assert any("exhausted" in note for note in again.notes)


def test_the_daily_budget_caps_the_reveals_and_the_search_goes_on_the_next_day(fake_providers, now):
    campaign = CampaignFactory(apollo_credits_per_day=5)
    source = apollo_source(campaign, per_cycle=25)

    first = apollo_discover(source=source, now=now, limit=100)
    same_day = apollo_discover(source=source, now=now + timedelta(hours=2), limit=100)

    assert (first.revealed, first.credits, source.state["index"]) == (5, 5, 5)
    assert fake_providers.revealed_ids == [f"fake{i:05d}" for i in range(5)]
    budget_note = "the campaign's Apollo budget of 5 credits a day is used: the search goes on tomorrow"
    assert budget_note in first.notes and budget_note in same_day.notes
    assert same_day.revealed == 0 and len(fake_providers.revealed_ids) == 5

    next_day = apollo_discover(source=source, now=now + timedelta(days=1), limit=100)

    assert fake_providers.revealed_ids[5:] == [f"fake{i:05d}" for i in range(5, 10)]
    assert next_day.credits == 5 and credits_used(campaign=campaign, provider="apollo", day=now.date()) == 5


def test_people_already_in_the_campaign_or_without_an_address_are_not_paid_for(fake_providers, now):
    campaign = CampaignFactory(apollo_credits_per_day=100)
    LeadFactory(campaign=campaign, external_id="apollo:fake00001", email="kept@here.example")
    fake_providers.by_id["fake00002"]["has_email"] = False
    source = apollo_source(campaign, per_cycle=5)

    run = apollo_discover(source=source, now=now, limit=100)

    assert fake_providers.revealed_ids == ["fake00000", "fake00003", "fake00004", "fake00005", "fake00006"]
    assert (run.credits, source.state["index"]) == (5, 7)
    assert Lead.objects.get(campaign=campaign, external_id="apollo:fake00001").email == "kept@here.example"


def test_per_cycle_and_the_cycles_lead_limit_both_bound_a_run(fake_providers, now):
    campaign = CampaignFactory(apollo_credits_per_day=100)
    source = apollo_source(campaign, per_cycle=30)

    run = apollo_discover(source=source, now=now, limit=4)

    assert run.revealed == 4 and source.state["index"] == 4


def test_changed_filters_start_the_search_again_from_its_first_page(fake_providers, now):
    campaign = CampaignFactory(apollo_credits_per_day=100)
    source = apollo_source(campaign, per_cycle=3)
    apollo_discover(source=source, now=now, limit=100)
    source.settings = {**source.settings, "q_keywords": "analytics"}
    source.save()

    apollo_discover(source=source, now=now, limit=100)

    # The same people again (this fake ignores filters): they are here already, so not paid for twice.
    assert fake_providers.revealed_ids == ["fake00000", "fake00001", "fake00002", "fake00003", "fake00004",
                                           "fake00005"]
    assert source.state["page"] == 1 and source.state["index"] == 6


def test_bad_settings_are_the_sources_error_and_nothing_is_asked(fake_providers, now):
    campaign = CampaignFactory()
    source = apollo_source(campaign, person_seniorities=["boss"], per_cycle=0)

    result = leads_discover(campaign=campaign, now=now, limit=20)

    source.refresh_from_db()
    assert result.errors == [source.last_error and f"source Apollo: {source.last_error}"]
    assert "person_seniorities: Unknown: boss" in source.last_error and "per_cycle" in source.last_error
    assert fake_providers.calls == {}


def test_a_filter_given_as_one_text_is_one_item_never_split_at_its_commas():
    clean = apollo_settings_clean({"person_locations": "Austin, Texas", "organization_num_employees_ranges": "1,10"})

    assert clean == {"person_locations": ["Austin, Texas"], "organization_num_employees_ranges": ["1,10"],
                     "per_cycle": 25}


# --- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "headers", "delay", "expected"), [
    (401, {"error": "Invalid access credentials."}, {}, 0, "the API key was refused (401): check it; the source is skipped"),
    (402, {"error": "Insufficient credits"}, {}, 0, "refused for the plan or credits (402): Insufficient credits"),
    (403, {"error": "Plan does not include API"}, {}, 0, "refused for the plan or credits (403)"),
    (500, {}, {}, 0, "server error 500; the source stops for this cycle"),
    (502, b"<html>Bad gateway</html>", {"Content-Type": "text/html"}, 0, "server error 502"),
    (200, b"{not json", {}, 0, "the answer is not JSON"),
    (200, {"people": "nope"}, {}, 0, "the search answer has no list of people"),
    (200, search_page([person(1)]), {}, 1.5, "no answer within 1 s"),
])
def test_a_failed_search_is_the_cycles_error_and_changes_nothing(provider_replay, now, status, body, headers, delay,
                                                                 expected):
    campaign = CampaignFactory()
    source = apollo_source(campaign)
    provider_replay.answer("POST", SEARCH, status=status, body=body, headers=headers, delay=delay)

    result = leads_discover(campaign=campaign, now=now, limit=20)

    source.refresh_from_db()
    assert len(result.errors) == 1 and expected in result.errors[0], result.errors
    assert "apollo-secret-key" not in result.errors[0]
    assert source.last_error in result.errors[0]
    assert (source.state["page"], source.state["index"]) == (1, 0)
    assert not Lead.objects.exists() and not ApiUsage.objects.exists()


def test_rate_limited_the_source_stops_and_waits_as_long_as_apollo_asked(provider_replay, now):
    campaign = CampaignFactory()
    source = apollo_source(campaign, per_cycle=2)
    provider_replay.answer("POST", SEARCH, status=429, body={"error": "Too many requests"},
                           headers={"Retry-After": "120"})

    limited = apollo_discover(source=source, now=now, limit=20)
    waiting = apollo_discover(source=source, now=now + timedelta(seconds=119), limit=20)

    assert "rate limited (429): retry after 120 s; the source stops for this cycle" in limited.error
    assert len(provider_replay.requests) == 1 and waiting.error == ""
    assert waiting.notes == ["Apollo asked to wait until 10:02:00 UTC: skipped this cycle"]

    provider_replay.answer("POST", SEARCH, body=search_page([person(1), person(2)]))
    provider_replay.answer("POST", REVEAL, body={"matches": [match(1), match(2)]})
    after = apollo_discover(source=source, now=now + timedelta(seconds=121), limit=20)

    assert (after.error, after.imported) == ("", 2)


@pytest.mark.parametrize(("status", "body", "delay", "outcome", "credits"), [
    (402, {"error": "Insufficient credits"}, 0, "refused", 0),
    (422, {"error": "Invalid details"}, 0, "refused", 0),
    (500, {}, 0, "refused", 0),
    (200, {"matches": "x"}, 0, "unknown", 2),  # answered, so maybe charged
    (200, {"matches": [match(1), match(2)]}, 1.5, "unknown", 2),
])
def test_a_failed_reveal_is_recorded_with_what_it_cost_and_the_people_are_asked_for_again(
        provider_replay, now, status, body, delay, outcome, credits):
    campaign = CampaignFactory(apollo_credits_per_day=10)
    source = apollo_source(campaign, per_cycle=2)
    provider_replay.answer("POST", SEARCH, body=search_page([person(1), person(2)]))
    provider_replay.answer("POST", REVEAL, status=status, body=body, delay=delay)

    failed = apollo_discover(source=source, now=now, limit=20)

    usage = ApiUsage.objects.get()
    assert failed.error and (usage.outcome, usage.credits, usage.asked) == (outcome, credits, 2)
    assert usage.error and usage.error in failed.error
    assert source.state["index"] == 0 and not Lead.objects.exists()

    # Retried: the same people are revealed again, and inserted once.
    provider_replay.answer("POST", SEARCH, body=search_page([person(1), person(2)]))
    provider_replay.answer("POST", REVEAL, body={"matches": [match(1), match(2)]})
    retried = apollo_discover(source=source, now=now, limit=20)

    assert (retried.error, retried.imported) == ("", 2)
    assert sorted(Lead.objects.values_list("external_id", flat=True)) == ["apollo:p1", "apollo:p2"]
    assert credits_used(campaign=campaign, provider="apollo", day=now.date()) == credits + 2
    assert [r["path"] for r in provider_replay.requests] == [SEARCH, REVEAL, SEARCH, REVEAL]
    assert source.state["exhausted"] is True


def test_an_empty_page_inside_the_search_is_asked_again_and_an_empty_last_page_ends_it(provider_replay, now):
    campaign = CampaignFactory()
    source = apollo_source(campaign)
    provider_replay.answer("POST", SEARCH, body=search_page([], page=1, total_pages=3))

    glitch = apollo_discover(source=source, now=now, limit=20)

    assert glitch.notes == ["Apollo answered page 1 of 3 empty: it is asked again next cycle"]
    assert not source.state.get("exhausted")
    provider_replay.answer("POST", SEARCH, body={"people": [], "pagination": {}})
    end = apollo_discover(source=source, now=now, limit=20)
    assert end.notes == ["the search is exhausted: every person it finds was handled"] and source.state["exhausted"]


def test_a_match_with_a_bad_field_is_reported_and_the_others_land(provider_replay, now):
    campaign = CampaignFactory()
    apollo_source(campaign, per_cycle=3)
    bad = {**match(2), "title": "CEO\x1b[31m"}
    odd_zone = {**match(3), "time_zone": "Mars/Olympus"}
    provider_replay.answer("POST", SEARCH, body=search_page([person(1), person(2), person(3)]))
    provider_replay.answer("POST", REVEAL, body={"matches": [match(1), bad, odd_zone]})

    result = leads_discover(campaign=campaign, now=now, limit=20)

    assert result.count == 2 and result.errors == []
    assert any("1 row rejected (line 2: job_title contains control characters)" in note for note in result.notes)
    assert Lead.objects.get(external_id="apollo:p3").timezone == ""
