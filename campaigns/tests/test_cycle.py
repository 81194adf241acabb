import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from campaigns import cycle, runs
from campaigns.cycle import cycle_run
from campaigns.runs import cycle_start_all
from campaigns.models import Campaign
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.models import Lead, LeadSource
from leads.tests.factories import LeadFactory, LeadSourceFactory
from outreach.models import OutreachAttempt

pytestmark = pytest.mark.django_db

CONTRACT_KEYS = {
    "campaign_id", "campaign_name", "dry_run", "leads_discovered", "leads_enriched", "outreach_sent",
    "outreach_failed", "outreach_skipped", "campaign_paused", "pause_reason", "errors",
}


def csv_file(tmp_path, rows: int, name="leads.csv"):
    path = tmp_path / name
    lines = ["email,first_name,company,job_title,company_size,industry"]
    lines += [f"person{i}@firm{i}.example,Person{i},Firm {i},CTO,11-50,SaaS" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_cycle_discovers_enriches_and_counts_what_it_would_send(tmp_path, now):
    campaign = CampaignFactory(max_emails_per_day=4, created_at=now, target_clients=50)
    LeadSourceFactory(campaign=campaign, settings={"path": str(csv_file(tmp_path, 6))})

    first = cycle_run(campaign=campaign, now=now)
    second = cycle_run(campaign=campaign, now=now)

    assert CONTRACT_KEYS <= set(first.as_dict())
    assert (first.dry_run, first.leads_discovered, first.leads_enriched) == (True, 6, 6)
    assert (first.outreach_sent, first.outreach_skipped, first.errors) == (4, 2, [])
    assert (second.leads_discovered, second.leads_enriched, second.outreach_sent) == (0, 0, 4)
    assert Lead.objects.filter(campaign=campaign, status=Lead.Status.ENRICHED).count() == 6
    assert not OutreachAttempt.objects.exists()


def test_discovery_respects_the_per_cycle_limit(tmp_path, now):
    campaign = CampaignFactory()
    LeadSourceFactory(campaign=campaign, settings={"path": str(csv_file(tmp_path, 12))})
    assert cycle_run(campaign=campaign, now=now, max_new_leads=5).leads_discovered == 5
    assert cycle_run(campaign=campaign, now=now, max_new_leads=5).leads_discovered == 5
    assert cycle_run(campaign=campaign, now=now, max_new_leads=5).leads_discovered == 2


def test_external_services_without_keys_are_reported_as_skipped(now):
    campaign = CampaignFactory()
    LeadSourceFactory(campaign=campaign, kind=LeadSource.Kind.APOLLO, name="Apollo", settings={})
    LeadFactory(campaign=campaign, status=Lead.Status.NEW)

    result = cycle_run(campaign=campaign, now=now)

    assert result.errors == []
    assert "source Apollo skipped: APOLLO_API_KEY is not set" in result.notes
    assert "dropcontact enrichment skipped: DROPCONTACT_API_KEY is not set" in result.notes


def test_a_failing_phase_is_reported_and_the_next_phases_still_run(monkeypatch, smtp_server, tmp_path, now):
    campaign = CampaignFactory()
    LeadSourceFactory(campaign=campaign, settings={"path": str(tmp_path / "nonexistent" / "leads.csv")})
    LeadFactory(campaign=campaign, next_action_at=now, score=0.5)

    def enrich_fails(**kwargs):
        raise RuntimeError("enrichment service exploded")

    monkeypatch.setattr(cycle, "leads_enrich", enrich_fails)
    result = cycle_run(campaign=campaign, now=now, dry_run=False)

    assert any("no such file" in e for e in result.errors)
    assert "enrich: RuntimeError: enrichment service exploded" in result.errors
    assert result.outreach_sent == 1
    assert LeadSource.objects.get().last_error.endswith("no such file")


def test_one_campaign_failing_never_stops_the_others(monkeypatch, smtp_server, now):
    broken = CampaignFactory(name="broken")
    MessageStepFactory(campaign=broken, position=1, body_template="{% if %}")
    LeadFactory(campaign=broken, next_action_at=now)
    CampaignFactory(name="exploding")
    healthy = CampaignFactory(name="healthy")
    LeadFactory(campaign=healthy, next_action_at=now, score=0.5)
    CampaignFactory(name="paused", active=False)

    real_cycle_run = runs.cycle_run

    def cycle_run_raising_for_one(*, campaign, **kwargs):
        if campaign.name == "exploding":
            raise RuntimeError("database went away")
        return real_cycle_run(campaign=campaign, **kwargs)

    monkeypatch.setattr(runs, "cycle_run", cycle_run_raising_for_one)
    results = {r.campaign_name: r for r in cycle_start_all(trigger="command", dry_run=False, now=now)}

    assert set(results) == {"broken", "exploding", "healthy"}
    assert "step 1 cannot be rendered" in results["broken"].errors[0]
    assert results["exploding"].errors == ["cycle: RuntimeError: database went away"]
    assert (results["healthy"].outreach_sent, results["healthy"].errors) == (1, [])
    assert smtp_server.recipients() == [healthy.leads.get().email]


def test_run_cam_cycle_prints_a_table_and_is_a_dry_run_by_default(smtp_server, now):
    campaign = CampaignFactory(name="Table test")
    LeadFactory(campaign=campaign)
    out = StringIO()

    call_command("run_cam_cycle", campaign_id=campaign.pk, stdout=out)

    text = out.getvalue()
    assert text.startswith("DRY RUN")
    assert "discovered  enriched  sent  failed  unknown  skipped" in text
    assert f"#{campaign.pk} Table test" in text
    assert "would send:" in text
    assert smtp_server.messages == []


def test_run_cam_cycle_json_gives_one_object_for_a_campaign_and_a_list_for_all(now):
    one, two = CampaignFactory(), CampaignFactory()
    out = StringIO()
    call_command("run_cam_cycle", campaign_id=one.pk, json=True, stdout=out)
    single = json.loads(out.getvalue())
    assert CONTRACT_KEYS <= set(single) and single["campaign_id"] == one.pk and single["dry_run"] is True

    out = StringIO()
    call_command("run_cam_cycle", "--all", "--json", stdout=out)
    assert [r["campaign_id"] for r in json.loads(out.getvalue())] == [one.pk, two.pk]


def test_run_cam_cycle_no_dry_run_sends(smtp_server):
    campaign = CampaignFactory()
    lead = LeadFactory(campaign=campaign)
    call_command("run_cam_cycle", "--campaign-id", str(campaign.pk), "--no-dry-run", stdout=StringIO())
    assert smtp_server.recipients() == [lead.email]


def test_run_cam_cycle_needs_a_campaign_or_all():
    with pytest.raises(CommandError):
        call_command("run_cam_cycle", stdout=StringIO(), stderr=StringIO())


@pytest.mark.django_db(transaction=True)
def test_run_cam_cycle_exits_non_zero_for_an_unknown_campaign(database_url):
    completed = subprocess.run(
        [sys.executable, "manage.py", "run_cam_cycle", "--campaign-id", "987654"],
        cwd=settings.BASE_DIR, env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 1
    assert "campaign 987654 not found" in completed.stderr


def test_make_demo_twice_loads_one_campaign_and_no_duplicate_leads():
    first, second = StringIO(), StringIO()
    call_command("cam_demo", stdout=first)
    call_command("cam_demo", stdout=second)

    campaign = Campaign.objects.get()
    assert campaign.lead_sources.count() == 1 and campaign.steps.count() == 3
    assert campaign.leads.count() == 50  # 52 rows: one malformed address, one duplicate
    assert "Loaded demo campaign" in first.getvalue()
    assert "Found demo campaign" in second.getvalue()
    row = [line for line in second.getvalue().splitlines() if line.startswith(f"#{campaign.pk} ")][0]
    assert row.split()[-10:-8] == ["0", "0"]  # discovered, enriched


def test_the_fake_apollo_demo_goes_on_with_its_search_and_never_calls_the_real_services(settings):
    settings.APOLLO_API_KEY, settings.APOLLO_BASE_URL = "a-real-key", "http://127.0.0.1:9"
    settings.DROPCONTACT_API_KEY, settings.DROPCONTACT_BASE_URL = "a-real-key", "http://127.0.0.1:9"
    first, second = StringIO(), StringIO()

    call_command("cam_demo", "--with-fake-apollo", stdout=first)
    call_command("cam_demo", "--with-fake-apollo", stdout=second)

    apollo = Campaign.objects.get(name__startswith="Demo: Apollo")
    # 20 people a cycle; the fake has no address for persons 6, 13, 20, 27 and 34.
    assert "20 people revealed for 20 Apollo credits, 2 without an email (not inserted), 18 new leads" in first.getvalue()
    assert "20 people revealed for 20 Apollo credits, 3 without an email (not inserted), 17 new leads" in second.getvalue()
    assert "Apollo credits (fake): 40 today of 50 a day, 40 in all" in second.getvalue()
    assert apollo.leads.filter(status=Lead.Status.ENRICHED).count() == 35
    assert apollo.leads.filter(email_verification__checked_by="dropcontact").count() == 35
    # Paused between demo runs, so that scheduled cycles never take it to the real services.
    assert not apollo.active and "fake local server" in apollo.pause_reason
    assert settings.APOLLO_BASE_URL == "http://127.0.0.1:9"  # the fake was for the demo's run only
