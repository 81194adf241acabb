"""The live switch, the recent runs and the dashboard's last-run line in the console (SPEC §7)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from campaigns.models import Campaign, CycleRun
from campaigns.runs import cycle_start
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db
ADDRESS = "Agency Ltd, 1 Main Street, Berlin"


@pytest.fixture(autouse=True)
def no_default_address(settings):
    settings.CAM_POSTAL_ADDRESS = ""


@pytest.fixture
def operator(client):
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.org", "pw"))
    return client


def go_live(client, campaign, **fields):
    return client.post(f"/campaigns/{campaign.pk}/live", {"live": "on", **fields}, follow=True)


def test_the_page_names_where_mail_would_go_before_going_live(operator, settings):
    settings.EMAIL_HOST, settings.EMAIL_PORT = "smtp.agency.example", 587
    campaign = CampaignFactory(sender_email="ana@agency.example", max_emails_per_day=25)
    page = operator.get(f"/campaigns/{campaign.pk}").content.decode()
    assert "Go live" in page and "SMTP smtp.agency.example:587" in page
    assert "up to 25 a day, from ana@agency.example" in page


def test_going_live_needs_the_confirmation(operator):
    campaign = CampaignFactory(postal_address=ADDRESS)
    page = go_live(operator, campaign).content.decode()
    assert "tick the confirmation" in page
    assert Campaign.objects.get(pk=campaign.pk).live is False


def test_going_live_without_a_postal_address_is_refused_with_the_reason(operator):
    campaign = CampaignFactory()
    page = go_live(operator, campaign, confirmed="on", postal_address="").content.decode()
    assert "Not live" in page and "postal address" in page
    assert Campaign.objects.get(pk=campaign.pk).live is False


def test_going_live_with_the_address_given_in_the_form_then_back_to_dry(operator):
    campaign = CampaignFactory()

    page = go_live(operator, campaign, confirmed="on", postal_address=ADDRESS).content.decode()

    campaign.refresh_from_db()
    assert campaign.live and campaign.postal_address == ADDRESS and campaign.live_since
    assert "LIVE: scheduled cycles now send real email" in page and "Stop live sending" in page
    operator.post(f"/campaigns/{campaign.pk}/live", {"live": ""})
    campaign.refresh_from_db()
    assert (campaign.live, campaign.live_since) == (False, None)


def test_a_viewer_sees_the_state_but_cannot_switch_it(client):
    user = get_user_model().objects.create_user("viewer", "v@example.org", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client.force_login(user)
    campaign = CampaignFactory(postal_address=ADDRESS)

    page = client.get(f"/campaigns/{campaign.pk}").content.decode()

    assert "Scheduled sending" in page and "Go live" not in page
    assert client.post(f"/campaigns/{campaign.pk}/live", {"live": "on", "confirmed": "on"}).status_code == 403
    assert Campaign.objects.get(pk=campaign.pk).live is False


def test_the_campaign_page_lists_recent_runs_and_the_dashboard_the_last_one(operator, smtp_server):
    campaign = CampaignFactory(name="Runner")
    MessageStepFactory(campaign=campaign, position=1)
    LeadFactory.create_batch(2, campaign=campaign, next_action_at=timezone.now())
    CampaignFactory(name="Idle")

    operator.post(f"/campaigns/{campaign.pk}/run", {"dry_run": "on"})
    cycle_start(campaign=campaign, trigger="schedule", dry_run=None)

    page = operator.get(f"/campaigns/{campaign.pk}").content.decode()
    assert page.count("<tr><td title=") == 2 and "console" in page and "schedule" in page
    assert CycleRun.objects.filter(campaign=campaign, trigger="console").get().requested_by.username == "op"
    dashboard = operator.get("/").content.decode()
    assert "last run 0\xa0minutes ago, 2 would be sent" in dashboard
    assert "never run" in dashboard


def test_a_console_run_while_another_cycle_runs_says_so(operator, smtp_server):
    from campaigns.runs import lease_take

    campaign = CampaignFactory()
    lease_take(campaign_id=campaign.pk, holder="worker:1:x")
    page = operator.post(f"/campaigns/{campaign.pk}/run", {"dry_run": "on"}, follow=True).content.decode()
    assert "Already running" in page and not CycleRun.objects.exists()


# --- the admin -------------------------------------------------------------------------------------


def admin_change(operator, campaign, **changes):
    from leads.tests.test_sources import campaign_change_data

    data = campaign_change_data(operator, campaign)
    data["initial-live"] = str(campaign.live)  # the hidden initial the page carries, as a browser posts it
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return operator.post(f"/admin/campaigns/campaign/{campaign.pk}/change/", data)


def test_the_admin_refuses_live_without_a_postal_address_and_saves_nothing(operator):
    campaign = CampaignFactory(name="Before")
    response = admin_change(operator, campaign, live="on", name="After")
    assert response.status_code == 200 and "postal address" in response.content.decode()
    campaign.refresh_from_db()
    assert (campaign.name, campaign.live) == ("Before", False)


def test_the_admin_switches_live_through_the_service(operator):
    campaign = CampaignFactory()
    assert admin_change(operator, campaign, live="on", postal_address=ADDRESS).status_code == 302
    campaign.refresh_from_db()
    assert campaign.live and campaign.live_since and campaign.postal_address == ADDRESS
    assert admin_change(operator, campaign, live=None).status_code == 302
    campaign.refresh_from_db()
    assert (campaign.live, campaign.live_since) == (False, None)


def test_the_admin_lists_runs_read_only(operator):
    campaign = CampaignFactory(name="Listed")
    cycle_start(campaign=campaign, trigger="command", dry_run=True)
    page = operator.get("/admin/campaigns/cyclerun/")
    assert page.status_code == 200 and "Listed" in page.content.decode()
    assert operator.get("/admin/campaigns/cyclerun/add/").status_code == 403
    assert operator.get("/admin/django_q/schedule/").status_code == 200


def test_a_stale_admin_page_does_not_switch_live_back_on(operator, api):
    campaign = CampaignFactory(live=True, postal_address=ADDRESS)
    from leads.tests.test_sources import campaign_change_data

    data = campaign_change_data(operator, campaign)  # opened while live
    data["initial-live"] = "True"
    Campaign.objects.filter(pk=campaign.pk).update(live=False, live_since=None)  # someone else stops it
    data["name"] = "Renamed"

    assert operator.post(f"/admin/campaigns/campaign/{campaign.pk}/change/", data).status_code == 302

    campaign.refresh_from_db()
    assert (campaign.name, campaign.live) == ("Renamed", False)


def test_creating_a_live_campaign_needs_change_campaign(db, settings):
    from cam_project.testing import token_client, user_with_perms

    adder = token_client(user_with_perms("campaigns.add_campaign", "campaigns.view_campaign"))
    body = {"name": "Sneaky", "live": True, "postal_address": ADDRESS}
    assert adder.post("/api/cam/campaigns", body, format="json").status_code == 403
    assert not Campaign.objects.exists()
    assert adder.post("/api/cam/campaigns", {**body, "live": False}, format="json").status_code == 201


def test_the_admin_add_form_cannot_make_a_live_campaign_without_change_campaign(client):
    user = get_user_model().objects.create_user("adder", "a@example.org", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["add_campaign", "view_campaign"]))
    client.force_login(user)
    page = client.get("/admin/campaigns/campaign/add/").content.decode()
    assert 'name="live"' not in page


def test_the_admin_page_carries_the_live_state_it_was_opened_with(operator):
    campaign = CampaignFactory(live=True, postal_address=ADDRESS)
    page = operator.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert 'name="initial-live" value="True"' in page
