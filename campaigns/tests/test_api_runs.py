"""The live switch, the run history and the lease through the HTTP API (SPEC §7)."""

import pytest
from django.utils import timezone

from cam_project.testing import token_client, user_with_perms
from campaigns.models import Campaign, CycleRun
from campaigns.runs import lease_take
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db

ADDRESS = "Agency Ltd, 1 Main Street, 10115 Berlin, Germany"


def detail(pk):
    return f"/api/cam/campaigns/{pk}"


def runs(pk):
    return f"/api/cam/campaigns/{pk}/runs"


@pytest.fixture(autouse=True)
def no_default_address(settings):
    settings.CAM_POSTAL_ADDRESS = ""


def test_going_live_without_a_postal_address_is_a_400_on_live_and_changes_nothing(api):
    campaign = CampaignFactory(name="Before")

    response = api.patch(detail(campaign.pk), {"name": "After", "live": True}, format="json")

    assert response.status_code == 400
    assert "postal address" in response.json()["live"][0]
    campaign.refresh_from_db()
    assert (campaign.name, campaign.live, campaign.live_since) == ("Before", False, None)


def test_going_live_with_a_postal_address_in_the_same_request_switches_it_on_and_off(api):
    campaign = CampaignFactory()

    on = api.patch(detail(campaign.pk), {"live": True, "postal_address": ADDRESS}, format="json")

    assert on.status_code == 200, on.content
    assert on.json()["live"] is True and on.json()["postal_address"] == ADDRESS and on.json()["live_since"]
    off = api.patch(detail(campaign.pk), {"live": False}, format="json").json()
    assert (off["live"], off["live_since"]) == (False, None)


def test_the_installations_postal_address_is_enough_to_go_live(api, settings):
    settings.CAM_POSTAL_ADDRESS = ADDRESS
    campaign = CampaignFactory()
    assert api.patch(detail(campaign.pk), {"live": True}, format="json").json()["live"] is True


def test_a_live_campaign_cannot_lose_its_only_postal_address(api):
    campaign = CampaignFactory(live=True, postal_address=ADDRESS)
    response = api.patch(detail(campaign.pk), {"postal_address": ""}, format="json")
    assert response.status_code == 400 and "live" in response.json()
    assert Campaign.objects.get(pk=campaign.pk).postal_address == ADDRESS


def test_a_campaign_created_live_needs_an_address_too(api):
    refused = api.post("/api/cam/campaigns", {"name": "Now", "live": True}, format="json")
    assert refused.status_code == 400 and "live" in refused.json()
    assert not Campaign.objects.exists()
    created = api.post("/api/cam/campaigns", {"name": "Now", "live": True, "postal_address": ADDRESS}, format="json")
    assert created.status_code == 201
    assert Campaign.objects.get().live


def test_only_users_who_may_change_the_campaign_switch_it_live(viewer_api):
    campaign = CampaignFactory(postal_address=ADDRESS)
    assert viewer_api.patch(detail(campaign.pk), {"live": True}, format="json").status_code == 403
    assert Campaign.objects.get(pk=campaign.pk).live is False


def test_live_must_be_a_boolean(api):
    campaign = CampaignFactory(postal_address=ADDRESS)
    response = api.patch(detail(campaign.pk), {"live": "maybe"}, format="json")
    assert response.status_code == 400 and "live" in response.json()


def test_every_cycle_run_through_the_api_is_listed_newest_first_with_who_asked(api, admin, smtp_server):
    campaign = CampaignFactory(postal_address=ADDRESS)  # live sending needs one
    MessageStepFactory(campaign=campaign, position=1)
    LeadFactory.create_batch(3, campaign=campaign, next_action_at=timezone.now())

    api.post(f"/api/cam/campaigns/{campaign.pk}/run-cycle")
    api.post(f"/api/cam/campaigns/{campaign.pk}/run-cycle?dry_run=false")

    body = api.get(runs(campaign.pk)).json()
    assert body["count"] == 2
    live, dry = body["results"]
    assert (live["dry_run"], live["trigger"], live["sent"], live["state"]) == (False, "api", 3, "finished")
    assert (dry["dry_run"], dry["sent"], dry["requested_by"]) == (True, 3, admin.username)
    assert live["duration_seconds"] >= 0 and live["result"]["outreach_sent"] == 3
    last = api.get(detail(campaign.pk)).json()
    assert last["last_run"]["id"] == live["id"] and last["lease"] == "free"


def test_runs_are_paginated_and_scoped_to_their_campaign(api):
    campaign, other = CampaignFactory(), CampaignFactory()
    now = timezone.now()
    for i in range(3):
        CycleRun.objects.create(campaign=campaign, trigger="schedule", dry_run=True, holder=f"h:{i}",
                                started_at=now, finished_at=now)
    CycleRun.objects.create(campaign=other, trigger="command", dry_run=True, holder="o", started_at=now)

    page = api.get(runs(campaign.pk) + "?page_size=2").json()

    assert (page["count"], len(page["results"]), bool(page["next"])) == (3, 2, True)
    assert {r["campaign"] for r in page["results"]} == {campaign.pk}
    assert api.get(runs(999999)).status_code == 404


def test_reading_runs_needs_the_view_permission(viewer_api, nobody_api):
    campaign = CampaignFactory()
    assert viewer_api.get(runs(campaign.pk)).status_code == 200
    assert nobody_api.get(runs(campaign.pk)).status_code == 403


def test_a_run_requested_while_another_holds_the_lease_is_a_409_that_does_nothing(api, smtp_server):
    campaign = CampaignFactory()
    LeadFactory(campaign=campaign, next_action_at=timezone.now())
    lease_take(campaign_id=campaign.pk, holder="worker-host:4242:abc")

    response = api.post(f"/api/cam/campaigns/{campaign.pk}/run-cycle?dry_run=false")

    assert response.status_code == 409
    body = response.json()
    assert body["already_running"] is True and body["run_id"] is None and "already running" in body["notes"][0]
    assert smtp_server.messages == [] and not CycleRun.objects.exists()
    assert "worker-host:4242:abc" in api.get(detail(campaign.pk)).json()["lease"]


def test_a_user_who_may_only_view_still_sees_the_live_state_and_last_run(db):
    campaign = CampaignFactory(live=True, postal_address=ADDRESS)
    viewer = token_client(user_with_perms("campaigns.view_campaign"))
    body = viewer.get(detail(campaign.pk)).json()
    assert body["live"] is True and body["last_run"] is None


@pytest.mark.parametrize("address", ["\u200b", "Main St\x1b[2J", "  \u200b\u2060 ", "A\tB"])
def test_an_address_of_invisible_or_control_characters_is_a_400(api, address):
    campaign = CampaignFactory()
    response = api.patch(detail(campaign.pk), {"postal_address": address, "live": True}, format="json")
    assert response.status_code == 400 and "postal_address" in response.json()
    assert Campaign.objects.get(pk=campaign.pk).live is False


def test_a_multi_line_address_is_kept_as_written(api):
    campaign = CampaignFactory()
    address = "Agency Ltd\r\n1 Main Street\n10115 Berlin"
    body = api.patch(detail(campaign.pk), {"postal_address": address, "live": True}, format="json").json()
    assert body["postal_address"] == address and body["live"] is True
