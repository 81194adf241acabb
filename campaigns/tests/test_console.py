"""The console's pages without a browser: permissions, validation, queries per page."""

import re
from io import BytesIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import Campaign
from campaigns.tests.factories import CampaignFactory
from leads.models import Lead
from leads.tests.factories import LeadFactory
from outreach.tests.factories import OutreachAttemptFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.org", "pw"))
    return client


@pytest.fixture
def viewer(client):
    user = get_user_model().objects.create_user("viewer", "v@example.org", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client.force_login(user)
    return client


def test_every_page_needs_a_login(client):
    campaign = CampaignFactory()
    for url in ("/", "/campaigns/new", f"/campaigns/{campaign.pk}", f"/campaigns/{campaign.pk}/leads"):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/login/"), url


def test_the_dashboard_shows_totals_and_each_campaign(operator):
    active = CampaignFactory(name="Alpha", target_clients=4)
    LeadFactory.create_batch(3, campaign=active)
    LeadFactory(campaign=active, status=Lead.Status.QUALIFIED)
    CampaignFactory(name="Beta", active=False, pause_reason="holiday")

    page = operator.get("/").content.decode()

    assert 'data-stat="campaigns">2<' in page and 'data-stat="active">1<' in page
    assert 'data-stat="leads">4<' in page and 'data-stat="qualified">1<' in page
    assert f'href="/campaigns/{active.pk}"' in page and "1 / 4" in page
    assert 'title="holiday">Paused<' in page


def test_the_create_form_refuses_what_the_api_refuses(operator):
    response = operator.post("/campaigns/new", {
        "name": "", "target_clients": "0", "max_emails_per_day": "100001", "channels_enabled": ["fax"],
        "target_mrr": "0", "qualification_threshold": "1.5", "max_attempts_per_lead": "3",
    })
    page = response.content.decode()
    assert response.status_code == 200 and not Campaign.objects.exists()
    for field in ("name", "target_clients", "max_emails_per_day", "channels_enabled", "qualification_threshold"):
        assert f'id="id_{field}_error"' in page, field


def test_a_valid_form_creates_the_campaign_through_the_service(operator):
    response = operator.post("/campaigns/new", {
        "name": "Spring", "target_clients": "5", "max_emails_per_day": "10", "channels_enabled": ["email", "phone"],
        "target_mrr": "1000", "qualification_threshold": "0.8", "max_attempts_per_lead": "2",
    })
    campaign = Campaign.objects.get()
    assert response.url == f"/campaigns/{campaign.pk}"
    assert (campaign.active, campaign.channels_enabled, campaign.max_emails_per_day) == (True, ["email", "phone"], 10)


def test_a_read_only_user_can_look_but_not_change(viewer):
    campaign = CampaignFactory()
    assert viewer.get(f"/campaigns/{campaign.pk}").status_code == 200
    assert viewer.get("/campaigns/new").status_code == 403
    assert viewer.post(f"/campaigns/{campaign.pk}/pause").status_code == 403
    upload = BytesIO(b"email\nx@acme.example\n")
    upload.name = "leads.csv"
    assert viewer.post(f"/campaigns/{campaign.pk}/leads", {"file": upload}).status_code == 403
    assert not Lead.objects.exists()
    # A dry run is reading; a live one is refused without the change permission.
    viewer.post(f"/campaigns/{campaign.pk}/run", {"dry_run": "", "confirmed": "yes"})
    assert Campaign.objects.get().active and not campaign.attempts.exists()


def test_a_live_run_needs_the_confirmation(operator, smtp_server):
    campaign = CampaignFactory()
    LeadFactory(campaign=campaign)
    response = operator.post(f"/campaigns/{campaign.pk}/run", {"confirmed": ""}, follow=True)
    assert "Live run not confirmed" in response.content.decode()
    assert smtp_server.messages == []
    operator.post(f"/campaigns/{campaign.pk}/run", {"confirmed": "yes"})
    assert len(smtp_server.messages) == 1


def test_the_leads_page_filters_searches_and_reports_an_upload(operator):
    campaign = CampaignFactory()
    LeadFactory(campaign=campaign, email="ann@acme.example", company="Acme")
    LeadFactory(campaign=campaign, email="bob@zeta.example", company="Zeta", status=Lead.Status.CONTACTED)
    page = operator.get(f"/campaigns/{campaign.pk}/leads?status=CONTACTED").content.decode()
    assert "bob@zeta.example" in page and "ann@acme.example" not in page
    page = operator.get(f"/campaigns/{campaign.pk}/leads?q=acme").content.decode()
    assert "ann@acme.example" in page and "bob@zeta.example" not in page

    upload = BytesIO(b"email,first_name\nnew@acme.example,New\nbroken,Bad\nann@acme.example,Ann\n")
    upload.name = "more.csv"
    page = operator.post(f"/campaigns/{campaign.pk}/leads", {"file": upload}, follow=True).content.decode()
    assert 'data-report="imported">1<' in page and 'data-report="rejected">1<' in page
    assert "already in this campaign" in page and "invalid email" in page


def page_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_dashboard_costs_the_same_for_2_or_30_campaigns(operator):
    for _ in range(2):
        LeadFactory(campaign=CampaignFactory())
    few = page_queries(operator, "/")
    for _ in range(28):
        LeadFactory.create_batch(2, campaign=CampaignFactory())
    assert page_queries(operator, "/") == few


def names_on(page: str) -> list[str]:
    return re.findall(r'<a href="/campaigns/\d+">([^<]+)</a>', page)


def test_the_dashboard_pages_searches_filters_and_sorts_its_campaigns(operator):
    from datetime import timedelta

    from django.utils import timezone

    from campaigns.models import CycleRun

    now = timezone.now()
    for i in range(30):
        CampaignFactory(name=f"Bulk {i:02d}", created_at=now - timedelta(days=60 - i))
    near = CampaignFactory(name="Near goal", target_clients=2, active=False, pause_reason="holiday")
    LeadFactory(campaign=near, status=Lead.Status.QUALIFIED)
    far = CampaignFactory(name="Far from goal", target_clients=100)
    Lead.objects.bulk_create(
        Lead(campaign=far, email=f"p{i}@far.example") for i in range(1200))
    ran = CampaignFactory(name="Ran lately")
    CycleRun.objects.create(campaign=ran, trigger="api", dry_run=True, holder="h", started_at=now)

    first = operator.get("/").content.decode()
    assert len(names_on(first)) == 25 and "page 1 of 2 (33 campaigns)" in first
    assert 'data-stat="leads">1,201<' in first  # thousands separators
    second = operator.get("/?page=2").content.decode()
    assert len(names_on(second)) == 8

    assert names_on(operator.get("/?q=goal&sort=name").content.decode()) == ["Far from goal", "Near goal"]
    assert names_on(operator.get("/?state=paused").content.decode()) == ["Near goal"]
    assert names_on(operator.get("/?sort=progress").content.decode())[0] == "Near goal"  # 1 of 2: 50 %
    assert names_on(operator.get("/?sort=last_run").content.decode())[0] == "Ran lately"
    page = operator.get("/?q=nothing-like-it").content.decode()
    assert "No campaign matches" in page
    # Unknown values fall back to the defaults instead of failing.
    assert operator.get("/?sort=drop+table&state=x&page=zz").status_code == 200


def test_the_dashboard_costs_the_same_for_30_or_300_campaigns_whatever_the_sort(operator):
    from campaigns.models import CycleRun
    from django.utils import timezone

    def make(count):
        for _ in range(count):
            campaign = CampaignFactory()
            LeadFactory(campaign=campaign)
            CycleRun.objects.create(campaign=campaign, trigger="api", dry_run=True, holder="h",
                                    started_at=timezone.now())

    make(30)
    few = {sort: page_queries(operator, f"/?sort={sort}") for sort in ("recent", "progress", "last_run")}
    make(270)
    assert {sort: page_queries(operator, f"/?sort={sort}") for sort in few} == few


def test_a_campaign_page_costs_the_same_for_3_or_150_leads_and_attempts(operator):
    campaign = CampaignFactory()
    for lead in LeadFactory.create_batch(3, campaign=campaign):
        OutreachAttemptFactory(lead=lead)
    few = page_queries(operator, f"/campaigns/{campaign.pk}")
    for lead in LeadFactory.create_batch(147, campaign=campaign):
        OutreachAttemptFactory(lead=lead)
    assert page_queries(operator, f"/campaigns/{campaign.pk}") == few


def test_the_admin_actions_call_the_services(operator, smtp_server):
    campaign = CampaignFactory(name="Admin run")
    lead = LeadFactory(campaign=campaign)
    url = "/admin/campaigns/campaign/"

    page = operator.post(url, {"action": "run_dry_cycle", "_selected_action": [campaign.pk]}, follow=True)
    assert "Admin run: discovered 0, enriched 0, would send 1" in page.content.decode()
    assert smtp_server.messages == []
    operator.post(url, {"action": "pause_campaigns", "_selected_action": [campaign.pk]})
    campaign.refresh_from_db()
    assert not campaign.active and campaign.pause_reason == "paused by op"
    operator.post(url, {"action": "resume_campaigns", "_selected_action": [campaign.pk]})
    campaign.refresh_from_db()
    assert campaign.active and campaign.resumed_at
    operator.post("/admin/leads/lead/", {"action": "mark_do_not_contact", "_selected_action": [lead.pk]})
    lead.refresh_from_db()
    assert lead.do_not_contact and lead.next_action_at is None


@pytest.mark.parametrize("url", ["/admin/leads/lead/", "/admin/outreach/outreachattempt/", "/admin/leads/leadsource/",
                                 "/admin/campaigns/campaign/", "/admin/outreach/suppression/"])
def test_admin_lists_cost_the_same_for_few_or_many_rows(operator, url):
    for lead in LeadFactory.create_batch(2):
        OutreachAttemptFactory(lead=lead)
    few = page_queries(operator, url)
    for lead in LeadFactory.create_batch(40):
        OutreachAttemptFactory(lead=lead)
    assert page_queries(operator, url) == few


def test_search_matches_every_word_across_name_company_title_and_industry(operator, client):
    campaign = CampaignFactory()
    LeadFactory(campaign=campaign, email="m@brightloop.example", first_name="Maya", last_name="Chen", industry="SaaS")
    LeadFactory(campaign=campaign, email="z@other.example", first_name="Zoe", last_name="Chen", industry="Retail")
    page = operator.get(f"/campaigns/{campaign.pk}/leads?q=maya+chen").content.decode()
    assert "m@brightloop.example" in page and "z@other.example" not in page
    api = operator.get(f"/api/cam/campaigns/{campaign.pk}/leads?search=saas").json()
    assert [lead["email"] for lead in api["results"]] == ["m@brightloop.example"]


def test_a_paused_campaign_is_not_run_from_the_console(operator):
    campaign = CampaignFactory(active=False, pause_reason="holiday")
    LeadFactory(campaign=campaign)
    page = operator.post(f"/campaigns/{campaign.pk}/run", {"dry_run": "on"}, follow=True).content.decode()
    assert "resume it to run a cycle" in page and 'id="cycle-result"' not in page


def test_a_user_without_view_permissions_sees_nothing(client):
    campaign = CampaignFactory()
    client.force_login(get_user_model().objects.create_user("nobody", "n@example.org", "pw"))
    for url in ("/", f"/campaigns/{campaign.pk}", f"/campaigns/{campaign.pk}/leads"):
        assert client.get(url).status_code == 403, url


def test_view_only_staff_can_neither_run_nor_use_admin_actions(viewer):
    campaign = CampaignFactory()
    LeadFactory(campaign=campaign, status=Lead.Status.NEW)
    page = viewer.post(f"/campaigns/{campaign.pk}/run", {"dry_run": "on"}, follow=True).content.decode()
    assert "needs the permission leads.add_lead" in page
    assert Lead.objects.get().status == Lead.Status.NEW  # no enrichment ran
    viewer.post("/admin/campaigns/campaign/", {"action": "pause_campaigns", "_selected_action": [campaign.pk]})
    assert Campaign.objects.get().active


def test_attempts_cannot_be_deleted_in_the_admin(operator):
    attempt = OutreachAttemptFactory()
    assert operator.post(f"/admin/outreach/outreachattempt/{attempt.pk}/delete/", {"post": "yes"}).status_code == 403
    assert attempt.__class__.objects.filter(pk=attempt.pk).exists()


def test_an_archived_campaign_is_paused_hidden_and_never_run_until_unarchived_and_resumed(operator, api):
    from campaigns.models import CycleRun
    from campaigns.tasks import campaign_cycles_fan_out

    CampaignFactory(name="Kept")
    old = CampaignFactory(name="Old one", live=True)
    LeadFactory.create_batch(3, campaign=old)

    response = operator.post(f"/campaigns/{old.pk}/archive", {"archive": "yes"})
    assert response.status_code == 302
    old.refresh_from_db()
    assert old.archived_at is not None and not old.active and old.pause_reason == "archived"
    assert Lead.objects.filter(campaign=old).count() == 3  # kept with its history

    dashboard = operator.get("/").content.decode()
    assert names_on(dashboard) == ["Kept"] and 'data-stat="leads">0<' in dashboard
    assert names_on(operator.get("/?state=archived").content.decode()) == ["Old one"]
    assert sorted(names_on(operator.get("/?state=all").content.decode())) == ["Kept", "Old one"]

    # No cycle touches it: not the scheduler's fan-out, not a run asked for by hand.
    assert campaign_cycles_fan_out() == 1
    ran = api.post(f"/api/cam/campaigns/{old.pk}/run-cycle", format="json")
    assert "campaign archived: nothing done (unarchive it to run it)" in ran.json()["notes"]
    assert not CycleRun.objects.filter(campaign=old).exists()
    refused = api.put(f"/api/cam/campaigns/{old.pk}/resume", format="json")
    assert refused.status_code == 409 and "archived" in refused.json()["detail"]

    assert api.put(f"/api/cam/campaigns/{old.pk}/unarchive", format="json").status_code == 200
    old.refresh_from_db()
    assert old.archived_at is None and not old.active  # back on the dashboard, still paused
    assert api.put(f"/api/cam/campaigns/{old.pk}/resume", format="json").status_code == 200
    assert api.put(f"/api/cam/campaigns/{old.pk}/archive", format="json").json()["active"] is False
    assert api.get(f"/api/cam/campaigns/{old.pk}").json()["archived_at"] is not None


def test_the_console_edits_a_campaign_with_the_apis_rules_but_never_makes_it_live(operator):
    from outreach.tests.factories import MailboxFactory

    campaign = CampaignFactory(name="Before", max_emails_per_day=20)
    box = MailboxFactory(name="Sales box")
    form = operator.get(f"/campaigns/{campaign.pk}/edit").content.decode()
    assert 'value="Before"' in form and "Save changes" in form

    data = {"name": "After", "target_clients": "12", "max_emails_per_day": "35", "channels_enabled": ["email"],
            "target_mrr": "0", "qualification_threshold": "0.8", "max_attempts_per_lead": "2",
            "qualify_on": "reply", "stop_company_on_reply": "on", "mailboxes": [str(box.pk)],
            "postal_address": "Agency, 1 Road, Paris", "timezone": "Europe/Paris", "live": "on"}
    response = operator.post(f"/campaigns/{campaign.pk}/edit", data)

    assert response.status_code == 302, response.content.decode()[:2000]
    campaign.refresh_from_db()
    assert (campaign.name, campaign.max_emails_per_day, campaign.qualify_on, campaign.stop_company_on_reply,
            campaign.timezone) == ("After", 35, "reply", True, "Europe/Paris")
    assert list(campaign.mailboxes.all()) == [box]
    assert campaign.live is False  # going live is confirmed on the campaign's page, not here

    bad = operator.post(f"/campaigns/{campaign.pk}/edit", {**data, "max_emails_per_day": "0", "timezone": "Mars/Base"})
    assert bad.status_code == 200
    errors = bad.context["form"].errors
    assert "max_emails_per_day" in errors and "timezone" in errors
    campaign.refresh_from_db()
    assert campaign.max_emails_per_day == 35


def test_editing_needs_the_change_permission(client):
    campaign = CampaignFactory()
    viewer = get_user_model().objects.create_user("viewer", "v@example.org", "pw")
    viewer.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client.force_login(viewer)
    assert client.get(f"/campaigns/{campaign.pk}/edit").status_code == 403
    assert client.post(f"/campaigns/{campaign.pk}/edit", {"name": "x"}).status_code == 403
