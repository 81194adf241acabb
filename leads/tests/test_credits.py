"""Credits of the lead-data providers: reserved against the campaign's daily budget before each
call, under its row lock, whatever runs at once; shown on the campaign page and in the API."""

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from campaigns.tests.factories import CampaignFactory
from leads.credits import Outcome, credits_reserve, credits_settle, credits_used
from leads.models import ApiUsage, Lead, LeadSource
from leads.tests.factories import LeadSourceFactory


@pytest.mark.django_db
def test_a_reservation_takes_what_is_left_of_the_day_and_a_refused_call_gives_it_back(now):
    campaign = CampaignFactory(apollo_credits_per_day=12)

    first = credits_reserve(campaign=campaign, provider="apollo", endpoint="people/bulk_match", wanted=10, now=now)
    second = credits_reserve(campaign=campaign, provider="apollo", endpoint="people/bulk_match", wanted=10, now=now)
    none_left = credits_reserve(campaign=campaign, provider="apollo", endpoint="people/bulk_match", wanted=1, now=now)
    other = credits_reserve(campaign=campaign, provider="dropcontact", endpoint="enrich/all", wanted=10, now=now,
                            all_or_none=True)

    assert (first.credits, second.credits, none_left) == (10, 2, None)
    assert other.credits == 10  # each provider has its own budget
    credits_settle(usage=first, now=now, outcome=Outcome.DONE, charged=7)
    credits_settle(usage=second, now=now, outcome=Outcome.REFUSED, error="402")
    assert credits_used(campaign=campaign, provider="apollo", day=now.date()) == 7
    assert credits_reserve(campaign=campaign, provider="apollo", endpoint="x", wanted=9, now=now).credits == 5
    tomorrow = credits_reserve(campaign=campaign, provider="apollo", endpoint="x", wanted=9, now=now + timedelta(days=1))
    assert tomorrow.credits == 9
    # Settled once: a second settlement (a retried task) changes nothing.
    credits_settle(usage=first, now=now, outcome=Outcome.REFUSED)
    assert ApiUsage.objects.get(pk=first.pk).credits == 7


@pytest.mark.django_db
def test_the_campaign_api_and_page_show_the_credits_used_today_and_in_all(api, admin, client):
    campaign = CampaignFactory(apollo_credits_per_day=40, dropcontact_credits_per_day=300)
    now = timezone.now()
    for when, provider, credits in ((now - timedelta(days=2), "apollo", 9), (now, "apollo", 4),
                                    (now, "dropcontact", 25)):
        usage = credits_reserve(campaign=campaign, provider=provider, endpoint="x", wanted=credits, now=when)
        credits_settle(usage=usage, now=when, outcome=Outcome.DONE)

    detail = api.get(f"/api/cam/campaigns/{campaign.pk}").json()
    client.force_login(admin)
    page = client.get(f"/campaigns/{campaign.pk}").content.decode()

    assert detail["credits"] == {"apollo": {"today": 4, "total": 13, "budget_per_day": 40},
                                 "dropcontact": {"today": 25, "total": 25, "budget_per_day": 300}}
    assert (detail["apollo_credits_per_day"], detail["dropcontact_credits_per_day"]) == (40, 300)
    assert ('<tr data-provider="apollo"><td>Apollo.io (emails revealed)</td><td class="num">4</td>'
            '<td class="num">40</td><td class="num">13</td></tr>') in page


@pytest.mark.django_db
def test_the_budgets_are_set_through_the_api_with_their_limits(api):
    campaign = CampaignFactory()

    refused = api.patch(f"/api/cam/campaigns/{campaign.pk}", {"apollo_credits_per_day": -1}, format="json")
    changed = api.patch(f"/api/cam/campaigns/{campaign.pk}", {"apollo_credits_per_day": 0,
                                                              "dropcontact_credits_per_day": 500}, format="json")

    assert refused.status_code == 400 and "apollo_credits_per_day" in refused.json()
    assert changed.status_code == 200
    campaign.refresh_from_db()
    assert (campaign.apollo_credits_per_day, campaign.dropcontact_credits_per_day) == (0, 500)


def _child_env(database_url, **more) -> dict:
    return {**os.environ, "DATABASE_URL": database_url, "MAKE_WEBHOOK_URL": "", "CAM_LOG_LEVEL": "WARNING",
            "CAM_VERIFY_EMAIL_DNS": "0", **more}


RESERVE = """
import sys
from django.utils import timezone
from campaigns.models import Campaign
from leads.credits import credits_reserve
campaign = Campaign.objects.get(pk=int(sys.argv[1]))
for wanted in [1, 2, 3] * 6:
    credits_reserve(campaign=campaign, provider="apollo", endpoint="people/bulk_match", wanted=wanted,
                    now=timezone.now())
"""


@pytest.mark.django_db(transaction=True)
def test_processes_reserving_at_once_never_spend_past_the_budget(database_url):
    campaign = CampaignFactory(apollo_credits_per_day=50)
    workers = [
        subprocess.Popen([sys.executable, "-c", "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
                          "'cam_project.settings'); django.setup(); exec(open(0).read())", str(campaign.pk)],
                         cwd=settings.BASE_DIR, env=_child_env(database_url), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [worker.communicate(RESERVE, timeout=120) for worker in workers]

    assert all(worker.returncode == 0 for worker in workers), [err for _, err in outputs]
    # 4 × 36 credits asked for; exactly the budget granted, never more.
    assert credits_used(campaign=campaign, provider="apollo", day=timezone.localdate()) == 50


@pytest.mark.django_db(transaction=True)
def test_four_cycles_at_once_on_an_apollo_campaign_reveal_nobody_twice_and_keep_to_the_budget(
        fake_providers, database_url):
    campaign = CampaignFactory(apollo_credits_per_day=25, dropcontact_credits_per_day=0)
    LeadSourceFactory(campaign=campaign, name="Apollo", kind=LeadSource.Kind.APOLLO,
                      settings={"person_titles": ["CEO"], "per_cycle": 10})
    env = _child_env(database_url, APOLLO_API_KEY="apollo-secret-key", APOLLO_BASE_URL=fake_providers.url,
                     DROPCONTACT_API_KEY="")
    command = [sys.executable, "manage.py", "run_cam_cycle", "--campaign-id", str(campaign.pk), "--json"]
    outputs = []
    for _round in range(3):  # four at once, three times: one holds the lease, the next round goes on after it
        workers = [subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(4)]
        outputs += [(worker.wait(timeout=120), *worker.communicate()) for worker in workers]

    assert all(code == 0 for code, _, _ in outputs), [err for _, _, err in outputs]
    results = [json.loads(out) for _, out, _ in outputs]
    assert all(r["errors"] == [] for r in results), results
    revealed = Counter(fake_providers.revealed_ids)
    assert revealed and max(revealed.values()) == 1, "someone was revealed (paid for) twice"
    assert len(revealed) == 25 == credits_used(campaign=campaign, provider="apollo", day=timezone.localdate())
    leads = Lead.objects.filter(campaign=campaign)
    assert leads.count() == sum(r["leads_discovered"] for r in results) == 25 - 3  # persons 6, 13, 20: no address
    assert len(set(leads.values_list("external_id", flat=True))) == leads.count()


@pytest.mark.django_db
def test_staff_read_the_calls_that_cost_credits_in_the_admin_and_cannot_change_them(admin, client, now):
    campaign = CampaignFactory(name="Spring")
    usage = credits_reserve(campaign=campaign, provider="apollo", endpoint="people/bulk_match", wanted=3, now=now)
    client.force_login(admin)

    listing = client.get("/admin/leads/apiusage/").content.decode()
    change = client.post(f"/admin/leads/apiusage/{usage.pk}/change/", {"credits": 0})

    assert "people/bulk_match" in listing and "Spring" in listing
    assert change.status_code == 403 and ApiUsage.objects.get().credits == 3
    assert client.get("/admin/leads/enrichmentrequest/").status_code == 200
