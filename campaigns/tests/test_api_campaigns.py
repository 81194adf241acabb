"""The campaign endpoints of the HTTP API (SPEC §5): shapes, authentication, permissions, invalid input.

GET/POST /api/cam/campaigns, GET/PATCH /api/cam/campaigns/{id}, PUT …/pause, PUT …/resume,
POST …/run-cycle?dry_run=true|false.
"""

from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token

from cam_project.testing import (
    assert_json_error,
    PASSWORD,
    anonymous_client,
    raw_json,
    session_client,
    superuser,
    token_client,
    user_with_perms,
)
from campaigns.models import Campaign
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.models import Lead
from leads.tests.factories import LeadFactory
from outreach.models import OutreachAttempt
from outreach.tests.factories import OutreachAttemptFactory

pytestmark = pytest.mark.django_db

LIST_KEYS = {"id", "name", "active", "live", "target_niche", "service_key", "target_clients", "current_leads",
             "qualified_leads", "conversion_rate", "goal_progress"}
DETAIL_KEYS = {"id", "name", "active", "description", "target_niche", "service_key", "target_clients", "target_mrr",
               "channels_enabled", "max_emails_per_day", "created_at", "metrics", "today_outreach"}
METRICS_KEYS = {"total_leads", "new_leads", "enriched_leads", "contacted_leads", "replied_leads", "qualified_leads",
                "lost_leads", "conversion_rate", "goal_progress"}
TODAY_KEYS = {"total", "sent", "failed", "skipped"}
ACTION_KEYS = {"id", "name", "active", "message"}
CYCLE_KEYS = {"campaign_id", "campaign_name", "dry_run", "leads_discovered", "leads_enriched", "outreach_sent",
              "outreach_failed", "outreach_skipped", "campaign_paused", "pause_reason", "errors"}

LIST = "/api/cam/campaigns"


def detail(pk):
    return f"/api/cam/campaigns/{pk}"


def pause(pk):
    return f"/api/cam/campaigns/{pk}/pause"


def resume(pk):
    return f"/api/cam/campaigns/{pk}/resume"


def run_cycle(pk, dry_run=None):
    return f"/api/cam/campaigns/{pk}/run-cycle" + ("" if dry_run is None else f"?dry_run={dry_run}")






@pytest.fixture
def campaign():
    return CampaignFactory()



def endpoints(pk):
    """Every campaign operation of the API, as (method, path)."""
    return [
        ("get", LIST), ("post", LIST), ("get", detail(pk)), ("patch", detail(pk)),
        ("put", pause(pk)), ("put", resume(pk)), ("post", run_cycle(pk)), ("post", run_cycle(pk, "false")),
    ]


# --- authentication ----------------------------------------------------------------------------------


def test_anonymous_requests_get_401_json_on_every_campaign_endpoint(campaign):
    client = anonymous_client()
    for method, path in endpoints(campaign.pk):
        response = getattr(client, method)(path, {}, format="json")
        body = assert_json_error(response, 401)
        assert "detail" in body, (method, path)
        assert response["WWW-Authenticate"].startswith("Token"), (method, path)
    campaign.refresh_from_db()
    assert campaign.active and Campaign.objects.count() == 1


def test_an_unknown_token_gets_401(campaign):
    client = anonymous_client()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert_json_error(client.get(LIST), 401)


def test_an_inactive_users_token_gets_401(admin):
    client = token_client(admin)
    admin.is_active = False
    admin.save()
    assert_json_error(client.get(LIST), 401)


def test_token_authentication_reads_and_writes(api, campaign):
    assert api.get(LIST).status_code == 200
    assert api.get(detail(campaign.pk)).status_code == 200
    assert api.post(LIST, {"name": "By token"}, format="json").status_code == 201


def test_a_token_made_with_drf_create_token_authenticates(admin):
    out = StringIO()
    call_command("drf_create_token", admin.username, stdout=out)
    key = Token.objects.get(user=admin).key
    assert key in out.getvalue()
    client = anonymous_client()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(LIST).status_code == 200


def test_session_authentication_reads_and_writes(admin, campaign):
    client = session_client(admin)
    assert [c["id"] for c in client.get(LIST).json()] == [campaign.pk]
    assert client.post(LIST, {"name": "By session"}, format="json").status_code == 201
    assert client.put(pause(campaign.pk), format="json").status_code == 200


def test_a_password_login_opens_a_session_for_the_api():
    admin = superuser(password=PASSWORD)
    client = anonymous_client()
    assert client.login(username=admin.username, password=PASSWORD)
    assert client.get(LIST).status_code == 200


def test_a_session_write_without_a_csrf_token_is_refused_but_a_token_write_is_not(admin):
    session = session_client(admin, enforce_csrf_checks=True)
    refused = session.post(LIST, {"name": "Forged"}, format="json")
    assert_json_error(refused, 403)
    assert "CSRF" in refused.json()["detail"]
    assert not Campaign.objects.exists()

    tokened = token_client(admin, enforce_csrf_checks=True)
    assert tokened.post(LIST, {"name": "Scripted"}, format="json").status_code == 201


# --- permissions ---------------------------------------------------------------------------------------


def test_a_read_only_staff_user_can_read_campaigns(viewer_api, campaign):
    assert viewer_api.get(LIST).json()[0]["id"] == campaign.pk
    assert viewer_api.get(detail(campaign.pk)).json()["id"] == campaign.pk


def test_a_read_only_staff_user_gets_403_on_every_write_and_nothing_changes(viewer_api, campaign, smtp_server):
    LeadFactory(campaign=campaign)
    writes = [
        ("post", LIST, {"name": "Nope"}),
        ("patch", detail(campaign.pk), {"name": "Renamed"}),
        ("put", pause(campaign.pk), {}),
        ("post", run_cycle(campaign.pk, "false"), {}),
    ]
    for method, path, body in writes:
        response = getattr(viewer_api, method)(path, body, format="json")
        assert "detail" in assert_json_error(response, 403), (method, path)
    name = campaign.name
    campaign.refresh_from_db()
    assert (campaign.name, campaign.active, Campaign.objects.count()) == (name, True, 1)
    assert smtp_server.messages == [] and not OutreachAttempt.objects.exists()


def test_a_read_only_staff_user_cannot_resume_a_paused_campaign(viewer_api):
    paused = CampaignFactory(active=False, pause_reason="by hand")
    assert_json_error(viewer_api.put(resume(paused.pk), format="json"), 403)
    paused.refresh_from_db()
    assert not paused.active


def test_a_user_without_permissions_gets_403_even_on_reads(nobody_api, campaign):
    for method, path in endpoints(campaign.pk):
        response = getattr(nobody_api, method)(path, {}, format="json")
        assert_json_error(response, 403)
    assert Campaign.objects.count() == 1


def test_each_write_needs_its_own_model_permission(campaign):
    adder = token_client(user_with_perms("campaigns.add_campaign"))
    changer = token_client(user_with_perms("campaigns.change_campaign"))

    assert adder.post(LIST, {"name": "Added"}, format="json").status_code == 201
    assert_json_error(adder.patch(detail(campaign.pk), {"name": "x"}, format="json"), 403)
    assert_json_error(adder.put(pause(campaign.pk), format="json"), 403)
    assert changer.patch(detail(campaign.pk), {"name": "Changed"}, format="json").status_code == 200
    assert changer.put(pause(campaign.pk), format="json").status_code == 200
    assert_json_error(changer.post(LIST, {"name": "Not allowed"}, format="json"), 403)
    assert sorted(Campaign.objects.values_list("name", flat=True)) == ["Added", "Changed"]


def test_a_dry_run_needs_view_campaign_and_add_lead_since_it_discovers_leads(campaign):
    runner = token_client(user_with_perms("campaigns.view_campaign", "leads.add_lead"))
    viewer = token_client(user_with_perms("campaigns.view_campaign"))
    other = token_client(user_with_perms("leads.view_lead"))
    assert runner.post(run_cycle(campaign.pk, "true")).status_code == 200
    assert "leads.add_lead" in assert_json_error(viewer.post(run_cycle(campaign.pk, "true")), 403)["detail"]
    assert_json_error(other.post(run_cycle(campaign.pk, "true")), 403)
    assert_json_error(other.post(run_cycle(campaign.pk)), 403)


def test_a_live_run_needs_change_campaign_and_a_viewer_sends_nothing(campaign, smtp_server):
    LeadFactory(campaign=campaign)
    viewer = token_client(user_with_perms("campaigns.view_campaign"))
    refused = viewer.post(run_cycle(campaign.pk, "false"))
    assert "change_campaign" in assert_json_error(refused, 403)["detail"]
    assert smtp_server.messages == [] and not OutreachAttempt.objects.exists()

    operator = token_client(user_with_perms("campaigns.view_campaign", "campaigns.change_campaign"))
    response = operator.post(run_cycle(campaign.pk, "false"))
    assert response.status_code == 200
    assert response.json()["outreach_sent"] == 1
    assert len(smtp_server.messages) == 1


# --- list ---------------------------------------------------------------------------------------------


def leads_in(campaign, **statuses):
    for status, number in statuses.items():
        LeadFactory.create_batch(number, campaign=campaign, status=status)


def test_the_list_gives_each_campaigns_progress_from_its_leads(api):
    busy = CampaignFactory(name="Busy", target_clients=4, target_niche="Dentists", service_key="seo")
    leads_in(busy, NEW=2, ENRICHED=1, CONTACTED=3, REPLIED=1, QUALIFIED=2, LOST=1)
    idle = CampaignFactory(name="Idle", active=False, target_clients=7)
    odd = CampaignFactory(name="Odd", target_clients=3)
    leads_in(odd, QUALIFIED=1, NEW=2)

    response = api.get(LIST)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    items = response.json()
    assert isinstance(items, list) and [item["id"] for item in items] == [busy.pk, idle.pk, odd.pk]
    assert all(set(item) == LIST_KEYS for item in items)
    assert items[0] == {
        "id": busy.pk, "name": "Busy", "active": True, "live": False, "target_niche": "Dentists", "service_key": "seo",
        "target_clients": 4, "current_leads": 10, "qualified_leads": 2, "conversion_rate": 0.2, "goal_progress": 0.5,
    }
    assert (items[1]["active"], items[1]["current_leads"], items[1]["qualified_leads"]) == (False, 0, 0)
    assert items[1]["conversion_rate"] == 0 and items[1]["goal_progress"] == 0
    assert isinstance(items[1]["conversion_rate"], float) and isinstance(items[1]["goal_progress"], float)
    assert (items[2]["conversion_rate"], items[2]["goal_progress"]) == (0.3333, 0.3333)


def test_the_list_is_empty_without_campaigns(api):
    assert api.get(LIST).json() == []


# --- create -------------------------------------------------------------------------------------------


def test_creating_a_campaign_answers_201_with_its_id_name_state_and_a_message(api):
    response = api.post(LIST, {"name": "Dentists in Lyon"}, format="json")

    assert response.status_code == 201
    campaign = Campaign.objects.get()
    assert response.json() == {"id": campaign.pk, "name": "Dentists in Lyon", "active": True,
                               "message": "Campaign created successfully"}
    assert set(response.json()) == ACTION_KEYS
    assert (campaign.active, campaign.target_clients, campaign.max_emails_per_day, campaign.channels_enabled) == (
        True, 10, 20, ["email"])


def test_a_created_campaign_keeps_every_field_given(api):
    body = {
        "name": "SEO for SaaS", "description": "Second wave", "target_niche": "B2B SaaS", "service_key": "seo",
        "target_clients": 5, "target_mrr": 12000, "channels_enabled": ["email", "phone", "email"],
        "max_emails_per_day": 35, "sender_name": "Alex", "sender_email": "alex@agency.example",
        "qualification_threshold": 0.6, "max_attempts_per_lead": 4,
    }
    created = api.post(LIST, body, format="json")
    assert created.status_code == 201

    shown = api.get(detail(created.json()["id"])).json()

    for name, value in body.items():
        expected = ["email", "phone"] if name == "channels_enabled" else value
        assert shown[name] == expected, name
    assert shown["active"] is True


def test_unknown_fields_and_read_only_fields_are_ignored_on_create(api):
    response = api.post(LIST, {"name": "Plain", "id": 999, "active": False, "colour": "red"}, format="json")
    assert response.status_code == 201
    campaign = Campaign.objects.get()
    assert campaign.pk == response.json()["id"] and campaign.active


INVALID_CAMPAIGNS = [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": None}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": ["a list"]}, "name"),
    ({"name": {"an": "object"}}, "name"),
    ({"name": "nul\x00byte"}, "name"),
    ({"name": "ok", "description": "nul\x00byte"}, "description"),
    ({"name": "ok", "target_niche": "x" * 201}, "target_niche"),
    ({"name": "ok", "service_key": "x" * 101}, "service_key"),
    ({"name": "ok", "sender_name": "x" * 101}, "sender_name"),
    ({"name": "ok", "sender_email": "not an address"}, "sender_email"),
    ({"name": "ok", "target_clients": 0}, "target_clients"),
    ({"name": "ok", "target_clients": -3}, "target_clients"),
    ({"name": "ok", "target_clients": "ten"}, "target_clients"),
    ({"name": "ok", "target_clients": 1.5}, "target_clients"),
    ({"name": "ok", "target_clients": True}, "target_clients"),
    ({"name": "ok", "target_clients": None}, "target_clients"),
    ({"name": "ok", "target_clients": 10**30}, "target_clients"),
    ({"name": "ok", "target_clients": 2**31}, "target_clients"),
    ({"name": "ok", "target_mrr": -1}, "target_mrr"),
    ({"name": "ok", "target_mrr": 10**12}, "target_mrr"),
    ({"name": "ok", "max_emails_per_day": 0}, "max_emails_per_day"),
    ({"name": "ok", "max_emails_per_day": -20}, "max_emails_per_day"),
    ({"name": "ok", "max_emails_per_day": 100_001}, "max_emails_per_day"),
    ({"name": "ok", "max_emails_per_day": "lots"}, "max_emails_per_day"),
    ({"name": "ok", "max_emails_per_day": "9" * 2000}, "max_emails_per_day"),
    ({"name": "ok", "max_attempts_per_lead": 0}, "max_attempts_per_lead"),
    ({"name": "ok", "max_attempts_per_lead": 21}, "max_attempts_per_lead"),
    ({"name": "ok", "max_attempts_per_lead": 40000}, "max_attempts_per_lead"),
    ({"name": "ok", "qualification_threshold": 1.5}, "qualification_threshold"),
    ({"name": "ok", "qualification_threshold": -0.1}, "qualification_threshold"),
    ({"name": "ok", "qualification_threshold": "high"}, "qualification_threshold"),
    ({"name": "ok", "qualification_threshold": "NaN"}, "qualification_threshold"),
    ({"name": "ok", "qualification_threshold": "Infinity"}, "qualification_threshold"),
    ({"name": "ok", "channels_enabled": []}, "channels_enabled"),
    ({"name": "ok", "channels_enabled": ["fax"]}, "channels_enabled"),
    ({"name": "ok", "channels_enabled": ["email", "pigeon"]}, "channels_enabled"),
    ({"name": "ok", "channels_enabled": "email"}, "channels_enabled"),
    ({"name": "ok", "channels_enabled": [None]}, "channels_enabled"),
    ({"name": "ok", "channels_enabled": [["email"]]}, "channels_enabled"),
    ({"name": "ok", "channels_enabled": {"email": True}}, "channels_enabled"),
    ({"name": "ok", "channels_enabled": None}, "channels_enabled"),
]


@pytest.mark.parametrize(("body", "field"), INVALID_CAMPAIGNS, ids=[f"{f}-{i}" for i, (_, f) in
                                                                 enumerate(INVALID_CAMPAIGNS)])
def test_invalid_campaign_input_is_a_400_naming_the_field_and_creates_nothing(api, body, field):
    response = api.post(LIST, body, format="json")

    errors = assert_json_error(response, 400)
    # A field's errors are a list of messages; a list field's, messages keyed by item index.
    assert field in errors and isinstance(errors[field], (list, dict)) and errors[field], errors
    assert not Campaign.objects.exists()


MALFORMED_JSON = [
    b'{"name": "x"',
    b'{"name": }',
    b"{'name': 'single quotes'}",
    b'{"name": "x",}',
    b"not json at all",
    b'{"name": "ok", "qualification_threshold": NaN}',
    b'{"name": "ok", "target_clients": Infinity}',
    b'{"name": "ok", "target_clients": ' + b"9" * 5000 + b"}",
    b"\xff\xfe\x00garbage",
    b'{"name": "\xc3\x28"}',
]


@pytest.mark.parametrize("body", MALFORMED_JSON, ids=range(len(MALFORMED_JSON)))
def test_a_malformed_json_body_is_a_400_json_error(api, body):
    errors = assert_json_error(raw_json(api, "post", LIST, body), 400)
    assert "detail" in errors
    assert not Campaign.objects.exists()


@pytest.mark.parametrize("body", [b"[]", b'[{"name": "x"}]', b'"a string"', b"42", b"null", b"true"])
def test_a_json_body_that_is_not_an_object_is_a_400(api, body):
    errors = assert_json_error(raw_json(api, "post", LIST, body), 400)
    assert "non_field_errors" in errors
    assert not Campaign.objects.exists()


def test_a_form_encoded_body_is_refused_as_an_unsupported_media_type(api):
    response = api.post(LIST, {"name": "Form"})  # multipart
    assert "detail" in assert_json_error(response, 415)
    response = api.post(LIST, "name=Form", content_type="application/x-www-form-urlencoded")
    assert_json_error(response, 415)
    assert not Campaign.objects.exists()


# --- detail -------------------------------------------------------------------------------------------


def test_the_detail_gives_the_campaigns_fields_metrics_and_todays_outreach(api):
    campaign = CampaignFactory(name="Busy", description="About", target_clients=4, target_mrr=5000,
                               channels_enabled=["email", "linkedin"], max_emails_per_day=30)
    leads_in(campaign, NEW=2, ENRICHED=1, CONTACTED=3, REPLIED=1, QUALIFIED=2, LOST=1)
    contacted = list(Lead.objects.filter(campaign=campaign, status=Lead.Status.CONTACTED))
    for lead, status in zip(contacted, ["sent", "sent", "failed"]):
        OutreachAttemptFactory(lead=lead, status=status)
    OutreachAttemptFactory(lead=contacted[0], step=2, status="skipped")
    OutreachAttemptFactory(lead=contacted[1], step=2, status="sent", created_at=timezone.now() - timedelta(days=2))
    other = CampaignFactory()
    OutreachAttemptFactory(lead=LeadFactory(campaign=other, status="QUALIFIED"), status="sent")

    response = api.get(detail(campaign.pk))

    assert response.status_code == 200
    body = response.json()
    assert DETAIL_KEYS <= set(body)
    assert {k: body[k] for k in DETAIL_KEYS - {"created_at", "metrics", "today_outreach"}} == {
        "id": campaign.pk, "name": "Busy", "active": True, "description": "About", "target_niche": "B2B SaaS",
        "service_key": "web_design", "target_clients": 4, "target_mrr": 5000, "channels_enabled": ["email", "linkedin"],
        "max_emails_per_day": 30,
    }
    assert datetime.fromisoformat(body["created_at"].replace("Z", "+00:00")) == campaign.created_at
    assert METRICS_KEYS <= set(body["metrics"])
    assert {k: body["metrics"][k] for k in METRICS_KEYS} == {
        "total_leads": 10, "new_leads": 2, "enriched_leads": 1, "contacted_leads": 3, "replied_leads": 1,
        "qualified_leads": 2, "lost_leads": 1, "conversion_rate": 0.2, "goal_progress": 0.5,
    }
    assert TODAY_KEYS <= set(body["today_outreach"])
    assert {k: body["today_outreach"][k] for k in TODAY_KEYS} == {"total": 4, "sent": 2, "failed": 1, "skipped": 1}


def test_a_campaign_without_leads_has_zero_metrics(api, campaign):
    body = api.get(detail(campaign.pk)).json()
    assert body["metrics"]["total_leads"] == 0
    assert body["metrics"]["conversion_rate"] == 0 and body["metrics"]["goal_progress"] == 0
    assert {k: body["today_outreach"][k] for k in TODAY_KEYS} == {"total": 0, "sent": 0, "failed": 0, "skipped": 0}


@pytest.mark.parametrize("suffix", ["", "/pause", "/resume", "/run-cycle"])
@pytest.mark.parametrize("pk", ["987654", "999999999999999999", "1" * 19, "1" * 30, "abc", "-1", "1.5", "0x10", "%20"])
def test_unknown_and_malformed_ids_are_404_json(api, campaign, pk, suffix):
    method = {"": "get", "/pause": "put", "/resume": "put", "/run-cycle": "post"}[suffix]
    response = getattr(api, method)(f"/api/cam/campaigns/{pk}{suffix}", format="json")
    assert "detail" in assert_json_error(response, 404)


def test_patching_an_unknown_campaign_is_404(api):
    assert_json_error(api.patch(detail(424242), {"name": "x"}, format="json"), 404)


@pytest.mark.parametrize(("method", "path"), [
    ("delete", "/api/cam/campaigns/{pk}"), ("put", "/api/cam/campaigns/{pk}"), ("post", "/api/cam/campaigns/{pk}"),
    ("delete", "/api/cam/campaigns"), ("patch", "/api/cam/campaigns"), ("put", "/api/cam/campaigns"),
    ("get", "/api/cam/campaigns/{pk}/pause"), ("post", "/api/cam/campaigns/{pk}/pause"),
    ("delete", "/api/cam/campaigns/{pk}/pause"), ("get", "/api/cam/campaigns/{pk}/resume"),
    ("post", "/api/cam/campaigns/{pk}/resume"), ("get", "/api/cam/campaigns/{pk}/run-cycle"),
    ("put", "/api/cam/campaigns/{pk}/run-cycle"), ("delete", "/api/cam/campaigns/{pk}/run-cycle"),
])
def test_wrong_methods_are_405_json_and_change_nothing(api, campaign, method, path):
    response = getattr(api, method)(path.format(pk=campaign.pk), {}, format="json")
    assert "detail" in assert_json_error(response, 405)
    campaign.refresh_from_db()
    assert campaign.active and Campaign.objects.count() == 1


# --- edit ---------------------------------------------------------------------------------------------


def test_patch_changes_only_the_fields_given_and_answers_with_the_detail(api):
    campaign = CampaignFactory(name="Old", target_clients=10, max_emails_per_day=20, description="Kept")
    LeadFactory(campaign=campaign, status="QUALIFIED")

    response = api.patch(detail(campaign.pk), {"name": "New", "max_emails_per_day": 50,
                                               "channels_enabled": ["linkedin"]}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert DETAIL_KEYS <= set(body)
    assert (body["name"], body["max_emails_per_day"], body["channels_enabled"]) == ("New", 50, ["linkedin"])
    assert body["metrics"]["qualified_leads"] == 1 and TODAY_KEYS <= set(body["today_outreach"])
    campaign.refresh_from_db()
    assert (campaign.name, campaign.max_emails_per_day, campaign.description, campaign.target_clients) == (
        "New", 50, "Kept", 10)


def test_an_empty_patch_changes_nothing(api, campaign):
    before = api.get(detail(campaign.pk)).json()
    response = api.patch(detail(campaign.pk), {}, format="json")
    assert response.status_code == 200
    assert response.json() == before


def test_patch_cannot_pause_a_campaign_that_is_what_pause_is_for(api, campaign):
    response = api.patch(detail(campaign.pk), {"active": False}, format="json")
    assert response.status_code == 200 and response.json()["active"] is True
    campaign.refresh_from_db()
    assert campaign.active


@pytest.mark.parametrize(("body", "field"), [(b, f) for b, f in INVALID_CAMPAIGNS if b], ids=[
    f"{f}-{i}" for i, (b, f) in enumerate(INVALID_CAMPAIGNS) if b])
def test_invalid_changes_are_a_400_naming_the_field_and_change_nothing(api, body, field):
    campaign = CampaignFactory(name="Kept", target_clients=10, max_emails_per_day=20)
    changes = dict(body)
    if field != "name":
        changes.pop("name")
    errors = assert_json_error(api.patch(detail(campaign.pk), changes, format="json"), 400)
    assert field in errors, errors
    campaign.refresh_from_db()
    assert (campaign.name, campaign.target_clients, campaign.max_emails_per_day, campaign.channels_enabled) == (
        "Kept", 10, 20, ["email"])


@pytest.mark.parametrize("body", MALFORMED_JSON[:5] + [b"[]", b"null"], ids=range(7))
def test_a_malformed_or_non_object_patch_is_a_400(api, campaign, body):
    assert_json_error(raw_json(api, "patch", detail(campaign.pk), body), 400)


# --- pause and resume -------------------------------------------------------------------------------


def test_pause_stops_the_campaign_and_keeps_the_reason(api, campaign):
    response = api.put(pause(campaign.pk), {"reason": "holidays"}, format="json")

    assert response.status_code == 200
    assert response.json() == {"id": campaign.pk, "name": campaign.name, "active": False, "message": "Campaign paused"}
    campaign.refresh_from_db()
    assert (campaign.active, campaign.pause_reason) == (False, "holidays") and campaign.paused_at is not None
    assert api.get(detail(campaign.pk)).json()["active"] is False
    assert api.get(LIST).json()[0]["active"] is False


def test_pause_without_a_body_records_who_paused(admin, api, campaign):
    response = api.put(pause(campaign.pk))
    assert response.status_code == 200 and response.json()["active"] is False
    campaign.refresh_from_db()
    assert campaign.pause_reason == f"paused by {admin.username}"


def test_pausing_a_paused_campaign_is_harmless(api):
    campaign = CampaignFactory(active=False, pause_reason="before")
    response = api.put(pause(campaign.pk), {"reason": "again"}, format="json")
    assert response.status_code == 200 and response.json()["active"] is False


@pytest.mark.parametrize("body", [{"reason": "x" * 301}, {"reason": {"a": 1}}, {"reason": ["a"]},
                                  {"reason": "nul\x00"}, {"reason": None}])
def test_an_invalid_pause_reason_is_a_400_and_the_campaign_goes_on(api, campaign, body):
    errors = assert_json_error(api.put(pause(campaign.pk), body, format="json"), 400)
    assert "reason" in errors
    campaign.refresh_from_db()
    assert campaign.active


@pytest.mark.parametrize("body", [b'{"reason": ', b"[1, 2]", b'"paused"'])
def test_a_malformed_pause_body_is_a_400_and_the_campaign_goes_on(api, campaign, body):
    assert_json_error(raw_json(api, "put", pause(campaign.pk), body), 400)
    campaign.refresh_from_db()
    assert campaign.active


def test_resume_restarts_a_paused_campaign_and_clears_the_reason(api):
    campaign = CampaignFactory(active=False, pause_reason="goal met", paused_at=timezone.now())

    response = api.put(resume(campaign.pk))

    assert response.status_code == 200
    assert response.json() == {"id": campaign.pk, "name": campaign.name, "active": True, "message": "Campaign resumed"}
    campaign.refresh_from_db()
    assert (campaign.active, campaign.pause_reason, campaign.paused_at) == (True, "", None)
    assert campaign.resumed_at is not None


def test_pause_then_resume_through_the_api_round_trips(api, campaign):
    assert api.put(pause(campaign.pk), {"reason": "check"}, format="json").json()["active"] is False
    assert api.put(resume(campaign.pk), format="json").json()["active"] is True
    assert api.get(detail(campaign.pk)).json()["active"] is True


# --- run a cycle --------------------------------------------------------------------------------------


@pytest.fixture
def due_campaign():
    """A campaign with a step and two due, verified leads."""
    campaign = CampaignFactory(name="Due", target_clients=50)
    MessageStepFactory(campaign=campaign, position=1, subject_template="Hello {{ company }}")
    LeadFactory(campaign=campaign, email="ann@acme.example", company="Acme", score=0.5)
    LeadFactory(campaign=campaign, email="bob@bolt.example", company="Bolt", score=0.5)
    return campaign


def test_run_cycle_is_a_dry_run_by_default_and_sends_nothing(api, due_campaign, smtp_server):
    response = api.post(run_cycle(due_campaign.pk))

    assert response.status_code == 200
    result = response.json()
    assert CYCLE_KEYS <= set(result)
    assert {k: result[k] for k in CYCLE_KEYS} == {
        "campaign_id": due_campaign.pk, "campaign_name": "Due", "dry_run": True, "leads_discovered": 0,
        "leads_enriched": 0, "outreach_sent": 2, "outreach_failed": 0, "outreach_skipped": 0,
        "campaign_paused": False, "pause_reason": None, "errors": [],
    }
    assert smtp_server.messages == []
    assert not OutreachAttempt.objects.exists()
    assert set(Lead.objects.values_list("status", flat=True)) == {"ENRICHED"}


@pytest.mark.parametrize("value", ["true", "True", "1"])
def test_run_cycle_with_dry_run_true_sends_nothing(api, due_campaign, smtp_server, value):
    result = api.post(run_cycle(due_campaign.pk, value)).json()
    assert (result["dry_run"], result["outreach_sent"]) == (True, 2)
    assert smtp_server.messages == [] and not OutreachAttempt.objects.exists()


@pytest.mark.parametrize("value", ["false", "False", "0"])
def test_run_cycle_with_dry_run_false_delivers_the_mail(api, due_campaign, smtp_server, value):
    response = api.post(run_cycle(due_campaign.pk, value))

    assert response.status_code == 200
    result = response.json()
    assert CYCLE_KEYS <= set(result)
    assert (result["dry_run"], result["outreach_sent"], result["outreach_failed"], result["errors"]) == (
        False, 2, 0, [])
    assert sorted(smtp_server.recipients()) == ["ann@acme.example", "bob@bolt.example"]
    assert {m["Subject"] for m in smtp_server.messages} == {"Hello Acme", "Hello Bolt"}
    assert OutreachAttempt.objects.filter(campaign=due_campaign, status="sent").count() == 2
    today = api.get(detail(due_campaign.pk)).json()["today_outreach"]
    assert (today["total"], today["sent"]) == (2, 2)


@pytest.mark.parametrize("value", ["maybe", "2", "truth", "%00", "yes%20please", "t" * 2000])
def test_a_dry_run_flag_that_is_not_a_boolean_is_a_400_and_sends_nothing(api, due_campaign, smtp_server, value):
    errors = assert_json_error(api.post(run_cycle(due_campaign.pk, value)), 400)
    assert "dry_run" in errors
    assert smtp_server.messages == [] and not OutreachAttempt.objects.exists()


def test_a_live_run_pauses_a_campaign_whose_goal_is_met_and_a_dry_run_only_says_so(api, smtp_server):
    campaign = CampaignFactory(target_clients=1)
    LeadFactory(campaign=campaign, status="QUALIFIED", next_action_at=None)
    LeadFactory(campaign=campaign)

    dry = api.post(run_cycle(campaign.pk, "true")).json()
    campaign.refresh_from_db()
    assert (dry["campaign_paused"], dry["pause_reason"], campaign.active) == (False, None, True)

    live = api.post(run_cycle(campaign.pk, "false")).json()
    campaign.refresh_from_db()
    assert live["campaign_paused"] is True and live["pause_reason"].startswith("goal met")
    assert (campaign.active, live["outreach_sent"]) == (False, 0)
    assert smtp_server.messages == []


def test_running_a_paused_campaign_does_nothing_and_says_it_is_paused(api, due_campaign, smtp_server):
    api.put(pause(due_campaign.pk), {"reason": "holidays"}, format="json")

    result = api.post(run_cycle(due_campaign.pk, "false")).json()

    assert (result["campaign_paused"], result["pause_reason"], result["outreach_sent"]) == (True, "holidays", 0)
    assert smtp_server.messages == []


def test_run_cycle_of_an_unknown_campaign_is_404_for_a_dry_and_a_live_run(api, smtp_server):
    assert_json_error(api.post(run_cycle(777, "true")), 404)
    assert_json_error(api.post(run_cycle(777, "false")), 404)
