"""/api/cam/mailboxes (SPEC §8): CRUD with write-only, encrypted passwords, validation as 400s,
a mailbox that sent refused deletion (409), and the login check against a real SMTP server with
AUTH (aiosmtpd) and a real IMAP server (Dovecot)."""

import re

import pytest
from django.db import connection

from cam_project.testing import superuser, token_client, user_with_perms
from campaigns.tests.factories import CampaignFactory
from outreach.models import Mailbox
from outreach.tests.factories import MailboxFactory, OutreachAttemptFactory
from conftest import free_port

pytestmark = pytest.mark.django_db
LIST = "/api/cam/mailboxes"

VALID = {
    "name": "Sales 1", "from_name": "Sam", "from_email": "sam@agency.example", "smtp_host": "smtp.agency.example",
    "smtp_port": 587, "smtp_username": "sam@agency.example", "smtp_password": "p4ss-word", "smtp_security": "starttls",
    "daily_cap": 40, "warmup_start": 5, "warmup_step": 5, "min_gap_seconds": 300, "window_days": [0, 1, 2, 3, 4],
    "window_start": "08:30", "window_end": "17:30", "timezone": "Europe/Paris",
}


@pytest.fixture
def api():
    return token_client(superuser())


def raw_column(mailbox_id: int, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM outreach_mailbox WHERE id = %s", [mailbox_id])
        return cursor.fetchone()[0]


def test_a_mailbox_is_created_with_its_password_encrypted_and_never_returned(api):
    campaign = CampaignFactory()
    response = api.post(LIST, {**VALID, "campaigns": [campaign.pk]}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert "smtp_password" not in body and body["smtp_password_set"] is True and body["imap_password_set"] is False
    assert body["window_start"] == "08:30" and body["campaigns"] == [campaign.pk]
    assert body["today"] == {"sent": 0, "cap": 5, "warmup_day": 1}
    assert "p4ss-word" not in response.content.decode()
    stored = raw_column(body["id"], "smtp_password")
    assert stored.startswith("gAAAAA") and "p4ss" not in stored
    assert Mailbox.objects.get(pk=body["id"]).smtp_password == "p4ss-word"
    assert list(campaign.mailboxes.values_list("pk", flat=True)) == [body["id"]]
    for url in (LIST, f"{LIST}/{body['id']}"):
        assert "p4ss-word" not in api.get(url).content.decode()


def test_window_times_are_hh_mm_in_and_out_and_the_schema_says_so(api):
    """SPEC §8 says "HH:MM"; OpenAPI's "time" format means HH:MM:SS with an offset, which the
    schema fuzzing caught: the schema describes what the API really returns."""
    schema = api.get("/api/schema/?format=json").json()["components"]["schemas"]["Mailbox"]["properties"]
    for name in ("window_start", "window_end"):
        assert "format" not in schema[name] and schema[name]["pattern"] == "^([01][0-9]|2[0-3]):[0-5][0-9]$"
    body = api.post(LIST, {**VALID, "window_start": "07:05", "window_end": "23:59"}, format="json").json()
    pattern = re.compile(schema["window_start"]["pattern"])
    assert (body["window_start"], body["window_end"]) == ("07:05", "23:59")
    assert pattern.match(body["window_start"]) and pattern.match(body["window_end"])
    refused = api.post(LIST, {**VALID, "window_start": "7:05:00+02:00"}, format="json")
    assert refused.status_code == 400 and "window_start" in refused.json()


def test_a_change_without_the_password_keeps_it_and_an_empty_one_clears_it(api):
    mailbox = MailboxFactory(smtp_password="keep-me")

    assert api.patch(f"{LIST}/{mailbox.pk}", {"daily_cap": 12}, format="json").status_code == 200
    mailbox.refresh_from_db()
    assert (mailbox.daily_cap, mailbox.smtp_password) == (12, "keep-me")

    assert api.patch(f"{LIST}/{mailbox.pk}", {"smtp_password": ""}, format="json").json()["smtp_password_set"] is False


def test_switching_a_disabled_mailbox_on_again_clears_when_it_was_disabled(api):
    mailbox = MailboxFactory(active=False, last_error="login refused: 535", disabled_at="2026-03-10T10:00:00Z")
    body = api.patch(f"{LIST}/{mailbox.pk}", {"active": True}, format="json").json()
    assert body["active"] is True and body["disabled_at"] is None and body["last_error"] == "login refused: 535"


@pytest.mark.parametrize("change, field", [
    ({"smtp_host": ""}, "smtp_host"),
    ({"kind": "esp", "esp": ""}, "esp"),
    ({"kind": "esp", "esp": "postmark"}, "esp_api_key"),
    ({"window_days": [0, 0]}, "window_days"),
    ({"window_days": [7]}, "window_days"),
    ({"window_days": []}, "window_days"),
    ({"window_start": "25:00"}, "window_start"),
    ({"window_end": "9am"}, "window_end"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"daily_cap": 0}, "daily_cap"),
    ({"daily_cap": 10**12}, "daily_cap"),
    ({"smtp_security": "tls"}, "smtp_security"),
    ({"esp_settings": {"url": "http://evil"}}, "esp_settings"),
    ({"esp_settings": {"api_url": {"nested": [1, 2]}}}, "esp_settings"),
    ({"from_email": "not an address"}, "from_email"),
    ({"from_name": "Sam\r\nBcc: everyone@victims.example"}, "from_name"),
    ({"name": "x" * 5000}, "name"),
    ({"smtp_password": "x" * 600}, "smtp_password"),
    ({"smtp_host": "smtp\x00.example"}, "smtp_host"),
    ({"imap_host": "imap.agency.example", "imap_username": ""}, "imap_username"),
    ({"campaigns": [999999]}, "campaigns"),
])
def test_invalid_input_is_a_400_with_the_field_and_saves_nothing(api, change, field):
    response = api.post(LIST, {**VALID, **change}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not Mailbox.objects.exists()


def test_a_mailbox_that_sent_cannot_be_deleted_one_that_did_not_can(api):
    used, unused = MailboxFactory(), MailboxFactory()
    OutreachAttemptFactory(mailbox=used)

    refused = api.delete(f"{LIST}/{used.pk}")
    assert refused.status_code == 409 and "switch it off" in refused.json()["detail"]
    assert api.delete(f"{LIST}/{unused.pk}").status_code == 204
    assert list(Mailbox.objects.values_list("pk", flat=True)) == [used.pk]


def test_permissions_follow_the_model_permissions():
    mailbox = MailboxFactory()
    reader = token_client(user_with_perms("outreach.view_mailbox"))
    assert reader.get(LIST).status_code == 200
    assert reader.patch(f"{LIST}/{mailbox.pk}", {"daily_cap": 1}, format="json").status_code == 403
    assert reader.post(f"{LIST}/{mailbox.pk}/test").status_code == 403
    assert token_client(user_with_perms()).get(LIST).status_code == 403


def test_the_campaign_api_sets_and_shows_its_mailboxes_time_zone_and_lawful_basis(api):
    first, second = MailboxFactory(), MailboxFactory()
    campaign = CampaignFactory()
    body = {"mailboxes": [first.pk, second.pk], "timezone": "America/New_York", "lawful_basis": "consent",
            "lawful_basis_note": "Opted in at our webinar."}

    response = api.patch(f"/api/cam/campaigns/{campaign.pk}", body, format="json")

    assert response.status_code == 200, response.content
    shown = response.json()
    assert sorted(shown["mailboxes"]) == sorted([first.pk, second.pk])
    assert (shown["timezone"], shown["lawful_basis"], shown["lawful_basis_note"]) == (
        "America/New_York", "consent", "Opted in at our webinar.")
    bad = api.patch(f"/api/cam/campaigns/{campaign.pk}", {"mailboxes": [999999], "lawful_basis": "vibes"}, format="json")
    assert bad.status_code == 400 and {"mailboxes", "lawful_basis"} <= set(bad.json())


# --- the login check --------------------------------------------------------------------------------


def test_the_check_logs_in_to_smtp_and_imap_and_says_so(api, smtp_servers, imap_server):
    server = smtp_servers(username="sam", password="right")
    mailbox = MailboxFactory(smtp_port=server.port, smtp_username="sam", smtp_password="right",
                             imap_host=imap_server.host, imap_port=imap_server.port, imap_security="none",
                             imap_username=imap_server.user, imap_password=imap_server.password)

    body = api.post(f"{LIST}/{mailbox.pk}/test").json()

    assert body["smtp"]["ok"] is True and "as sam" in body["smtp"]["detail"]
    assert body["imap"]["ok"] is True and "'INBOX' and 'Sent' found" in body["imap"]["detail"]
    assert server.messages == []  # nothing sent


def test_the_check_says_what_failed_without_echoing_the_password(api, smtp_servers, imap_server):
    server = smtp_servers(username="sam", password="right")
    mailbox = MailboxFactory(smtp_port=server.port, smtp_username="sam", smtp_password="wrong-smtp-secret",
                             imap_host=imap_server.host, imap_port=imap_server.port, imap_security="none",
                             imap_username=imap_server.user, imap_password="wrong-imap-secret")

    response = api.post(f"{LIST}/{mailbox.pk}/test")

    body = response.json()
    assert body["smtp"]["ok"] is False and body["smtp"]["detail"].startswith("authentication failed")
    assert body["imap"]["ok"] is False and body["imap"]["detail"].startswith("authentication failed")
    assert "secret" not in response.content.decode()
    mailbox.refresh_from_db()
    assert mailbox.active and mailbox.last_error == ""  # a check changes nothing


def test_the_check_names_a_refused_connection_and_a_missing_folder(api, imap_server):
    mailbox = MailboxFactory(smtp_port=free_port(), imap_host=imap_server.host, imap_port=imap_server.port,
                             imap_security="none", imap_username=imap_server.user,
                             imap_password=imap_server.password, imap_sent="Sent Items")

    body = api.post(f"{LIST}/{mailbox.pk}/test").json()

    assert body["smtp"]["ok"] is False and "cannot connect" in body["smtp"]["detail"]
    assert "Connection refused" in body["smtp"]["detail"] or "ConnectionRefused" in body["smtp"]["detail"]
    assert body["imap"]["ok"] is False and "no folder named 'Sent Items'" in body["imap"]["detail"]


def test_the_check_of_an_esp_mailbox_says_its_key_is_checked_by_the_first_send(api):
    mailbox = MailboxFactory(kind="esp", esp="postmark", esp_api_key="k", smtp_host="")
    body = api.post(f"{LIST}/{mailbox.pk}/test").json()
    assert body["smtp"]["ok"] is None and "first send" in body["smtp"]["detail"]
    assert body["imap"] == {"ok": None, "detail": "no IMAP server set: replies are not read from this mailbox"}
