"""Trust at the doors: the 403 page, login rate limiting, hostile text refused at every entry."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db.models import F
from django.test import Client

from cam_project.testing import PASSWORD, assert_json_error, superuser, user_with_perms
from campaigns.models import Campaign
from campaigns.tests.factories import CampaignFactory
from leads.models import Lead
from leads.tests.factories import LeadFactory
from outreach.models import Suppression

pytestmark = pytest.mark.django_db


# --- the 403 page ----------------------------------------------------------------------------------


def logged_in(*perms: str) -> Client:
    client = Client()
    client.force_login(user_with_perms(*perms, staff=True, username="pat"))
    return client


def test_a_user_without_permissions_gets_a_403_page_with_the_console_layout_and_a_logout():
    response = logged_in().get("/")

    assert response.status_code == 403
    assert [t.name for t in response.templates][:2] == ["403.html", "base.html"]
    html = response.content.decode()
    assert '<header class="top">' in html and "cam.css" in html  # the console's layout
    assert '<form method="post" action="/logout/"' in html and "Log out pat</button>" in html
    assert "<code>campaigns.view_campaign</code>: see the dashboard" in html


def test_the_403_page_lists_only_the_permissions_the_account_lacks():
    response = logged_in("campaigns.view_campaign", "leads.view_lead").get("/campaigns/new")

    assert response.status_code == 403
    html = response.content.decode()
    assert "<code>campaigns.add_campaign</code>: create campaigns" in html
    assert "<code>campaigns.view_campaign</code>" not in html and "<code>leads.view_lead</code>" not in html


def test_the_logout_button_of_the_403_page_logs_out():
    client = logged_in()
    page = client.get("/")
    assert page.status_code == 403

    response = client.post("/logout/")

    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/")["Location"] == "/login/?next=/"  # logged out: sent to log in again


# --- login attempts are rate-limited (django-axes) -------------------------------------------------


@pytest.fixture
def limits(settings):
    """The documented defaults, whatever the environment running the tests says."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; not what is tested
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.CAM_BEHIND_PROXY = False


@pytest.fixture
def pat(limits):
    return user_with_perms("campaigns.view_campaign", staff=True, username="pat", password=PASSWORD)


def fail(client: Client, url: str, times: int, username: str = "pat", **extra):
    for _ in range(times):
        response = client.post(url, {"username": username, "password": "wrong guess"}, **extra)
    return response


def assert_locked_out(response):
    assert response.status_code == 429
    html = response.content.decode()
    assert "<h1>Too many failed logins</h1>" in html and '<header class="top">' in html
    assert "refused, even with the right password, for 15 minutes" in html


def test_five_failed_console_logins_lock_the_username_out_even_with_the_right_password(limits, pat):
    client = Client()
    fourth = fail(client, "/login/", 4)
    assert fourth.status_code == 200 and "Wrong username or password." in fourth.content.decode()

    assert_locked_out(fail(client, "/login/", 1))
    assert_locked_out(client.post("/login/", {"username": "pat", "password": PASSWORD}))
    assert client.get("/")["Location"] == "/login/?next=/"  # not logged in


def test_the_admin_login_is_locked_out_too(limits, pat):
    client = Client()
    assert fail(client, "/admin/login/", 4).status_code == 200

    assert_locked_out(fail(client, "/admin/login/", 1))
    assert_locked_out(client.post("/admin/login/", {"username": "pat", "password": PASSWORD}))
    assert client.get("/admin/")["Location"].startswith("/admin/login/")


def test_failures_on_the_console_and_the_admin_add_up(limits, pat):
    client = Client()
    fail(client, "/login/", 3)

    assert_locked_out(fail(client, "/admin/login/", 2))


def test_the_lockout_holds_one_username_from_one_address_only(limits, pat):
    other = user_with_perms("campaigns.view_campaign", username="sam", password=PASSWORD)
    fail(Client(), "/login/", 5)

    same_address_other_user = Client().post("/login/", {"username": other.username, "password": PASSWORD})
    other_address_same_user = Client(REMOTE_ADDR="10.0.0.9").post("/login/", {"username": "pat", "password": PASSWORD})

    assert same_address_other_user.status_code == 302
    assert other_address_same_user.status_code == 302


def test_the_lockout_ends_after_15_minutes(limits, pat):
    client = Client()
    fail(client, "/login/", 5)
    assert_locked_out(client.post("/login/", {"username": "pat", "password": PASSWORD}))

    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))  # 16 minutes later

    response = client.post("/login/", {"username": "pat", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"


def test_without_a_lockout_time_the_pair_stays_locked_until_staff_unlock_it(limits, pat, settings):
    settings.AXES_COOLOFF_TIME = None  # CAM_LOGIN_LOCKOUT_MINUTES=0
    client = Client()
    locked = fail(client, "/login/", 5)
    assert locked.status_code == 429 and "even with the right password, until an administrator unlocks it." in (
        locked.content.decode())

    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(days=30))
    assert client.post("/login/", {"username": "pat", "password": PASSWORD}).status_code == 429

    AccessAttempt.objects.all().delete()  # what staff do in the admin
    assert client.post("/login/", {"username": "pat", "password": PASSWORD}).status_code == 302


def test_a_successful_login_resets_the_count_of_failures(limits, pat):
    client = Client()
    fail(client, "/login/", 4)
    assert client.post("/login/", {"username": "pat", "password": PASSWORD}).status_code == 302
    client.post("/logout/")

    assert fail(client, "/login/", 4).status_code == 200  # 4 more: 8 in all, not locked out
    assert client.post("/login/", {"username": "pat", "password": PASSWORD}).status_code == 302


def test_behind_the_proxy_failures_count_by_the_address_the_proxy_appended(limits, pat, settings):
    settings.CAM_BEHIND_PROXY = True
    # The client forges the first X-Forwarded-For entry on every try; the proxy appends the real one.
    for forged in ("1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4", "5.5.5.5"):
        last = fail(Client(), "/login/", 1, HTTP_X_FORWARDED_FOR=f"{forged}, 203.0.113.7")
    assert_locked_out(last)

    elsewhere = Client().post("/login/", {"username": "pat", "password": PASSWORD},
                              HTTP_X_FORWARDED_FOR="203.0.113.7, 198.51.100.2")
    assert elsewhere.status_code == 302


# --- addresses added in the admin are normalised ---------------------------------------------------


@pytest.fixture
def admin_client(db):
    client = Client()
    client.force_login(superuser())
    return client


def lead_form(campaign, email):
    return {"campaign": campaign.pk, "source": "", "email": email, "first_name": "Mia", "last_name": "", "company": "X",
            "job_title": "", "company_size": "", "industry": ""}


def test_a_lead_added_in_the_admin_with_a_mixed_case_address_is_stored_lower_case(admin_client):
    campaign = CampaignFactory()

    response = admin_client.post("/admin/leads/lead/add/", lead_form(campaign, " Mixed.Case@X.example "))

    assert response.status_code == 302, response.context["adminform"].form.errors
    lead = Lead.objects.get()
    assert (lead.email, lead.status, lead.campaign) == ("mixed.case@x.example", Lead.Status.NEW, campaign)
    assert lead.next_action_at is not None  # due at once, like an imported lead


def test_a_lead_added_in_the_admin_in_another_case_is_the_same_address(admin_client):
    campaign = CampaignFactory()
    LeadFactory(campaign=campaign, email="mixed.case@x.example")

    response = admin_client.post("/admin/leads/lead/add/", lead_form(campaign, "Mixed.Case@X.example"))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "__all__": ["Lead with this Campaign and Email already exists."],
    }
    assert Lead.objects.count() == 1


def suppression_form(email):
    return {"email": email, "reason": "manual", "note": "asked by phone", "created_at_0": "2026-03-10",
            "created_at_1": "10:00:00"}


def test_a_suppression_added_in_the_admin_with_a_mixed_case_address_stops_its_leads(admin_client):
    lead = LeadFactory(email="mixed.case@x.example")

    response = admin_client.post("/admin/outreach/suppression/add/", suppression_form("Mixed.Case@X.example"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Suppression.objects.get().email == "mixed.case@x.example"
    lead.refresh_from_db()
    assert lead.next_action_at is None and lead.stopped_reason == "address is on the suppression list"


def test_a_suppression_added_in_the_admin_in_another_case_is_the_same_address(admin_client):
    Suppression.objects.create(email="mixed.case@x.example")

    response = admin_client.post("/admin/outreach/suppression/add/", suppression_form("MIXED.case@x.example"))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"email": ["Suppression with this Email already exists."]}
    assert Suppression.objects.count() == 1


# --- control characters are refused at the API and the console -------------------------------------

CONTROL_MESSAGE = "Remove the control characters (line breaks, tabs, escape sequences) from this text."
HOSTILE = {
    "a forged header": "Alex\r\nBcc: x@y.example",
    "an escape sequence": "Acme\x1b[31m",
    "a bidirectional override": "moc.example\u202e",
    "a tab": "Acme\tInc",
}


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE)
@pytest.mark.parametrize("field", ["name", "sender_name"])
def test_the_api_refuses_a_new_campaign_with_control_characters_in_a_name(api, field, value):
    data = {"name": "Q2 outreach", "sender_name": "Alex", field: value}

    body = assert_json_error(api.post("/api/cam/campaigns", data, format="json"), 400)

    assert body == {field: [CONTROL_MESSAGE]}
    assert not Campaign.objects.exists()


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE)
@pytest.mark.parametrize("field", ["name", "sender_name"])
def test_the_api_refuses_to_edit_a_campaign_name_to_one_with_control_characters(api, field, value):
    campaign = CampaignFactory(name="Q2 outreach", sender_name="Alex")

    body = assert_json_error(api.patch(f"/api/cam/campaigns/{campaign.pk}", {field: value}, format="json"), 400)

    assert body == {field: [CONTROL_MESSAGE]}
    campaign.refresh_from_db()
    assert (campaign.name, campaign.sender_name) == ("Q2 outreach", "Alex")


def test_the_console_create_form_shows_the_control_character_errors_next_to_their_fields():
    client = logged_in("campaigns.view_campaign", "campaigns.add_campaign")
    data = {"name": "Q2\x1b[31m", "sender_name": "Alex\r\nBcc: x@y.example", "target_clients": "10", "target_mrr": "0",
            "channels_enabled": ["email"], "max_emails_per_day": "20", "max_attempts_per_lead": "3",
            "qualification_threshold": "0.7"}

    response = client.post("/campaigns/new", data)

    assert response.status_code == 200
    assert response.context["form"].errors == {"name": [CONTROL_MESSAGE], "sender_name": [CONTROL_MESSAGE]}
    html = response.content.decode()
    assert f'<div class="field-error" id="id_sender_name_error" role="alert"><p>{CONTROL_MESSAGE}</p>' in html
    assert not Campaign.objects.exists()


LEAD_FIELDS = ["first_name", "last_name", "company", "job_title", "company_size", "industry"]


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE)
@pytest.mark.parametrize("field", LEAD_FIELDS)
def test_the_api_refuses_a_new_lead_with_control_characters_in_its_details(api, field, value):
    campaign = CampaignFactory()

    response = api.post(f"/api/cam/campaigns/{campaign.pk}/leads", {"email": "maya@brightloop.example", field: value},
                        format="json")

    assert assert_json_error(response, 400) == {field: [CONTROL_MESSAGE]}
    assert not Lead.objects.exists()


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE)
@pytest.mark.parametrize("field", LEAD_FIELDS)
def test_the_api_refuses_to_edit_a_lead_detail_to_one_with_control_characters(api, field, value):
    lead = LeadFactory()
    before = getattr(lead, field)

    response = api.patch(f"/api/cam/leads/{lead.pk}", {field: value}, format="json")

    assert assert_json_error(response, 400) == {field: [CONTROL_MESSAGE]}
    lead.refresh_from_db()
    assert getattr(lead, field) == before


def test_lead_details_with_ordinary_punctuation_and_accents_are_accepted(api):
    lead = LeadFactory()

    response = api.patch(f"/api/cam/leads/{lead.pk}", {"company": "Smith & Søn (Zürich) — “Ltd.”", "first_name": "Zoë"},
                         format="json")

    assert response.status_code == 200
    assert response.json()["company"] == "Smith & Søn (Zürich) — “Ltd.”"
