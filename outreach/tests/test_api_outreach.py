"""The outreach endpoints of the HTTP API: a campaign's attempts and the global suppression list.

GET /api/cam/campaigns/{id}/attempts, GET/POST /api/cam/suppressions, GET/DELETE
/api/cam/suppressions/{id}, DELETE /api/cam/suppressions?email=….
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from cam_project.testing import (
    assert_json_error,
    anonymous_client,
    raw_json,
    session_client,
    token_client,
    user_with_perms,
)
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.models import Lead
from leads.tests.factories import LeadFactory
from outreach.models import OutreachAttempt, Suppression
from outreach.tests.factories import OutreachAttemptFactory, SuppressionFactory

pytestmark = pytest.mark.django_db

PAGE_KEYS = {"count", "next", "previous", "results"}
ATTEMPT_KEYS = {"id", "campaign", "lead", "lead_email", "channel", "step", "status", "subject", "body", "error",
                "message_id", "created_at", "finished_at", "resolution", "resolved_by", "resolved_at"}
SUPPRESSION_KEYS = {"id", "email", "reason", "note", "created_at"}
SUPPRESSIONS = "/api/cam/suppressions"
STOPPED_BY_SUPPRESSION = "address is on the suppression list"


def attempts_url(campaign_pk):
    return f"/api/cam/campaigns/{campaign_pk}/attempts"


def suppression_url(pk):
    return f"{SUPPRESSIONS}/{pk}"






@pytest.fixture
def campaign():
    return CampaignFactory(target_clients=50)



def ago(**delta):
    return timezone.now() - timedelta(**delta)


# --- authentication and permissions -----------------------------------------------------------------


def test_anonymous_requests_get_401_json_on_every_outreach_endpoint(campaign):
    gone = SuppressionFactory(email="gone@example.org")
    client = anonymous_client()
    requests = [
        client.get(attempts_url(campaign.pk)),
        client.get(SUPPRESSIONS),
        client.post(SUPPRESSIONS, {"email": "new@example.org"}, format="json"),
        client.get(suppression_url(gone.pk)),
        client.delete(suppression_url(gone.pk)),
        client.delete(SUPPRESSIONS + "?email=gone@example.org"),
    ]
    for response in requests:
        assert "detail" in assert_json_error(response, 401)
        assert response["WWW-Authenticate"].startswith("Token")
    assert list(Suppression.objects.values_list("email", flat=True)) == ["gone@example.org"]


def test_token_and_session_authentication_both_work(admin, campaign):
    for number, client in enumerate((token_client(admin), session_client(admin))):
        assert client.get(attempts_url(campaign.pk)).status_code == 200
        assert client.get(SUPPRESSIONS).status_code == 200
        assert client.post(SUPPRESSIONS, {"email": f"s{number}@example.org"}, format="json").status_code == 201
    assert Suppression.objects.count() == 2


def test_a_read_only_staff_user_can_read_attempts_and_suppressions(viewer_api, campaign):
    attempt = OutreachAttemptFactory(lead=LeadFactory(campaign=campaign))
    gone = SuppressionFactory()
    assert viewer_api.get(attempts_url(campaign.pk)).json()["results"][0]["id"] == attempt.pk
    assert viewer_api.get(SUPPRESSIONS).json()["results"][0]["id"] == gone.pk
    assert viewer_api.get(suppression_url(gone.pk)).json()["email"] == gone.email


def test_a_read_only_staff_user_gets_403_when_changing_the_suppression_list(viewer_api, campaign):
    gone = SuppressionFactory(email="gone@example.org")
    lead = LeadFactory(campaign=campaign, email="open@example.org")
    writes = [
        viewer_api.post(SUPPRESSIONS, {"email": "open@example.org"}, format="json"),
        viewer_api.delete(suppression_url(gone.pk)),
        viewer_api.delete(SUPPRESSIONS + "?email=gone@example.org"),
    ]
    for response in writes:
        assert "detail" in assert_json_error(response, 403)
    assert list(Suppression.objects.values_list("email", flat=True)) == ["gone@example.org"]
    lead.refresh_from_db()
    assert lead.next_action_at is not None


def test_a_user_without_permissions_gets_403_on_reads(nobody_api, campaign):
    gone = SuppressionFactory()
    assert_json_error(nobody_api.get(attempts_url(campaign.pk)), 403)
    assert_json_error(nobody_api.get(SUPPRESSIONS), 403)
    assert_json_error(nobody_api.get(suppression_url(gone.pk)), 403)


def test_adding_needs_add_suppression_and_removing_needs_delete_suppression():
    adder = token_client(user_with_perms("outreach.add_suppression"))
    remover = token_client(user_with_perms("outreach.delete_suppression"))

    assert adder.post(SUPPRESSIONS, {"email": "a@example.org"}, format="json").status_code == 201
    assert adder.post(SUPPRESSIONS, {"email": "b@example.org"}, format="json").status_code == 201
    assert_json_error(adder.delete(SUPPRESSIONS + "?email=a@example.org"), 403)
    assert_json_error(remover.post(SUPPRESSIONS, {"email": "c@example.org"}, format="json"), 403)
    assert remover.delete(SUPPRESSIONS + "?email=a@example.org").status_code == 204
    b = Suppression.objects.get(email="b@example.org")
    assert remover.delete(suppression_url(b.pk)).status_code == 204
    assert not Suppression.objects.exists()


# --- attempts -----------------------------------------------------------------------------------------


def test_attempts_are_a_page_of_the_campaigns_attempts_newest_first(api, campaign):
    ann = LeadFactory(campaign=campaign, email="ann@acme.example")
    bob = LeadFactory(campaign=campaign, email="bob@bolt.example")
    oldest = OutreachAttemptFactory(lead=ann, step=1, status="sent", created_at=ago(days=3), subject="Hi Ann",
                                    message_id="<1@agency.example>", finished_at=ago(days=3))
    newest = OutreachAttemptFactory(lead=bob, step=1, status="failed", created_at=ago(minutes=1),
                                    error="550 no such user")
    middle = OutreachAttemptFactory(lead=ann, step=2, status="skipped", created_at=ago(days=1))
    OutreachAttemptFactory(lead=LeadFactory(campaign=CampaignFactory()))

    response = api.get(attempts_url(campaign.pk))

    assert response.status_code == 200
    page = response.json()
    assert set(page) == PAGE_KEYS and (page["count"], page["next"], page["previous"]) == (3, None, None)
    assert [item["id"] for item in page["results"]] == [newest.pk, middle.pk, oldest.pk]
    assert all(set(item) == ATTEMPT_KEYS for item in page["results"])
    first, last = page["results"][0], page["results"][2]
    assert (first["campaign"], first["lead"], first["lead_email"], first["status"], first["error"]) == (
        campaign.pk, bob.pk, "bob@bolt.example", "failed", "550 no such user")
    assert (last["lead_email"], last["channel"], last["step"], last["subject"], last["message_id"]) == (
        "ann@acme.example", "email", 1, "Hi Ann", "<1@agency.example>")
    assert last["finished_at"] is not None and first["finished_at"] is None


def test_attempts_filter_by_status(api, campaign):
    sent = [OutreachAttemptFactory(lead=LeadFactory(campaign=campaign), status="sent") for _ in range(2)]
    OutreachAttemptFactory(lead=LeadFactory(campaign=campaign), status="failed")

    page = api.get(attempts_url(campaign.pk) + "?status=sent").json()

    assert page["count"] == 2 and {item["id"] for item in page["results"]} == {a.pk for a in sent}
    assert api.get(attempts_url(campaign.pk) + "?status=unknown").json()["count"] == 0


@pytest.mark.parametrize("status", ["SENT", "bounced", "sent%00", "x" * 300])
def test_an_unknown_attempt_status_filter_is_a_400(api, campaign, status):
    assert "status" in assert_json_error(api.get(attempts_url(campaign.pk) + f"?status={status}"), 400)


def test_attempts_are_paginated(api, campaign):
    attempts = [OutreachAttemptFactory(lead=LeadFactory(campaign=campaign), created_at=ago(minutes=n))
                for n in range(5)]

    first = api.get(attempts_url(campaign.pk) + "?page_size=2").json()
    third = api.get(attempts_url(campaign.pk) + "?page_size=2&page=3").json()

    assert first["count"] == 5 and first["next"].endswith("/attempts?page=2&page_size=2")
    assert [item["id"] for item in first["results"]] == [attempts[0].pk, attempts[1].pk]
    assert [item["id"] for item in third["results"]] == [attempts[4].pk] and third["next"] is None
    assert_json_error(api.get(attempts_url(campaign.pk) + "?page_size=2&page=4"), 404)


def test_a_live_run_shows_its_sends_in_the_attempts_and_a_dry_run_none(api, campaign, smtp_server):
    MessageStepFactory(campaign=campaign, position=1, subject_template="Hello {{ company }}")
    LeadFactory(campaign=campaign, email="ann@acme.example", company="Acme", score=0.5)

    api.post(f"/api/cam/campaigns/{campaign.pk}/run-cycle?dry_run=true")
    assert api.get(attempts_url(campaign.pk)).json()["count"] == 0
    api.post(f"/api/cam/campaigns/{campaign.pk}/run-cycle?dry_run=false")

    page = api.get(attempts_url(campaign.pk)).json()
    assert page["count"] == 1
    item = page["results"][0]
    assert (item["lead_email"], item["status"], item["step"], item["subject"]) == (
        "ann@acme.example", "sent", 1, "Hello Acme")
    assert item["message_id"] == smtp_server.messages[0]["Message-ID"]


@pytest.mark.parametrize("pk", ["424242", "999999999999999999", "1" * 30, "abc", "-1"])
def test_the_attempts_of_an_unknown_campaign_are_404_json(api, pk):
    assert "detail" in assert_json_error(api.get(attempts_url(pk)), 404)


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_attempts_are_read_only_405(api, campaign, method):
    OutreachAttemptFactory(lead=LeadFactory(campaign=campaign))
    response = getattr(api, method)(attempts_url(campaign.pk), {"status": "sent"}, format="json")
    assert "detail" in assert_json_error(response, 405)
    assert OutreachAttempt.objects.count() == 1


# --- the suppression list: reading --------------------------------------------------------------------


def test_the_suppression_list_is_a_page_newest_first(api):
    old = SuppressionFactory(email="old@example.org", created_at=ago(days=2), note="asked by phone")
    new = SuppressionFactory(email="new@example.org", reason="bounced")

    page = api.get(SUPPRESSIONS).json()

    assert set(page) == PAGE_KEYS and page["count"] == 2
    assert [item["id"] for item in page["results"]] == [new.pk, old.pk]
    assert all(set(item) == SUPPRESSION_KEYS for item in page["results"])
    assert (page["results"][1]["email"], page["results"][1]["reason"], page["results"][1]["note"]) == (
        "old@example.org", "unsubscribed", "asked by phone")


def test_the_suppression_list_can_be_searched_by_part_of_the_address(api):
    wanted = SuppressionFactory(email="someone@acme.example")
    SuppressionFactory(email="other@bolt.example")
    page = api.get(SUPPRESSIONS + "?search=ACME").json()
    assert [item["id"] for item in page["results"]] == [wanted.pk]


@pytest.mark.parametrize("search", ["a%00b", "x" * 255])
def test_a_suppression_search_with_a_nul_byte_or_too_long_is_a_400(api, search):
    assert "search" in assert_json_error(api.get(SUPPRESSIONS + f"?search={search}"), 400)


def test_one_suppression_is_shown_by_id(api):
    gone = SuppressionFactory(email="gone@example.org", note="n")
    body = api.get(suppression_url(gone.pk)).json()
    assert body["id"] == gone.pk and set(body) == SUPPRESSION_KEYS
    assert (body["email"], body["reason"], body["note"]) == ("gone@example.org", "unsubscribed", "n")


@pytest.mark.parametrize("pk", ["424242", "999999999999999999", "1" * 19, "1" * 30, "abc", "-1"])
def test_an_unknown_or_malformed_suppression_id_is_404_json(api, pk):
    SuppressionFactory()
    assert "detail" in assert_json_error(api.get(suppression_url(pk)), 404)
    assert "detail" in assert_json_error(api.delete(suppression_url(pk)), 404)
    assert Suppression.objects.count() == 1


# --- the suppression list: adding --------------------------------------------------------------------


def test_suppressing_a_new_address_answers_201_with_it_normalised(api):
    response = api.post(SUPPRESSIONS, {"email": "  Jane Doe <Jane.Doe@ACME.example> ", "note": "asked us"},
                        format="json")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == SUPPRESSION_KEYS
    stored = Suppression.objects.get()
    assert (body["id"], body["email"], body["reason"], body["note"]) == (
        stored.pk, "jane.doe@acme.example", "manual", "asked us")
    assert stored.email == "jane.doe@acme.example"


def test_suppressing_an_address_already_suppressed_answers_200_with_the_existing_entry(api):
    gone = SuppressionFactory(email="gone@example.org", reason="bounced")

    response = api.post(SUPPRESSIONS, {"email": "GONE@Example.ORG", "reason": "manual"}, format="json")

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["reason"]) == (gone.pk, "bounced")
    assert Suppression.objects.count() == 1


@pytest.mark.parametrize("reason", ["unsubscribed", "bounced", "complained", "manual"])
def test_each_suppression_reason_is_accepted(api, reason):
    response = api.post(SUPPRESSIONS, {"email": "a@example.org", "reason": reason}, format="json")
    assert response.status_code == 201 and response.json()["reason"] == reason


def test_suppressing_an_address_stops_its_leads_in_every_campaign_at_once(api, campaign, smtp_server):
    MessageStepFactory(campaign=campaign, position=1)
    here = LeadFactory(campaign=campaign, email="gone@example.org")
    elsewhere = LeadFactory(campaign=CampaignFactory(), email="gone@example.org")
    other = LeadFactory(campaign=campaign, email="open@example.org")

    assert api.post(SUPPRESSIONS, {"email": "Gone@Example.org"}, format="json").status_code == 201

    for lead in (here, elsewhere):
        lead.refresh_from_db()
        assert (lead.next_action_at, lead.stopped_reason) == (None, STOPPED_BY_SUPPRESSION)
    other.refresh_from_db()
    assert other.next_action_at is not None and other.stopped_reason == ""
    result = api.post(f"/api/cam/campaigns/{campaign.pk}/run-cycle?dry_run=false").json()
    assert result["outreach_sent"] == 1
    assert smtp_server.recipients() == ["open@example.org"]


def test_a_suppressed_address_cannot_be_added_as_a_lead(api, campaign):
    api.post(SUPPRESSIONS, {"email": "gone@example.org"}, format="json")
    response = api.post(f"/api/cam/campaigns/{campaign.pk}/leads", {"email": "gone@example.org"}, format="json")
    assert "email" in assert_json_error(response, 400)
    assert not Lead.objects.exists()


INVALID_SUPPRESSIONS = [
    ({}, "email"),
    ({"email": ""}, "email"),
    ({"email": "   "}, "email"),
    ({"email": None}, "email"),
    ({"email": "not-an-address"}, "email"),
    ({"email": "a@"}, "email"),
    ({"email": ["a@example.org"]}, "email"),
    ({"email": {"a": "a@example.org"}}, "email"),
    ({"email": "x" * 400 + "@example.org"}, "email"),
    ({"email": "a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".example"}, "email"),
    ({"email": "nul\x00@example.org"}, "email"),
    ({"email": "a@example.org", "reason": "hated us"}, "reason"),
    ({"email": "a@example.org", "reason": "MANUAL"}, "reason"),
    ({"email": "a@example.org", "reason": None}, "reason"),
    ({"email": "a@example.org", "note": "x" * 301}, "note"),
    ({"email": "a@example.org", "note": "nul\x00"}, "note"),
    ({"email": "a@example.org", "note": ["n"]}, "note"),
]


@pytest.mark.parametrize(("body", "field"), INVALID_SUPPRESSIONS,
                         ids=[f"{f}-{i}" for i, (_, f) in enumerate(INVALID_SUPPRESSIONS)])
def test_invalid_suppression_input_is_a_400_naming_the_field_and_adds_nothing(api, body, field):
    errors = assert_json_error(api.post(SUPPRESSIONS, body, format="json"), 400)
    assert field in errors and errors[field], errors
    assert not Suppression.objects.exists()


@pytest.mark.parametrize("body", [b'{"email": ', b"{'email': 'a@example.org'}", b"[]",
                                  b'[{"email": "a@example.org"}]', b'"a@example.org"', b"null", b"\xff"])
def test_a_malformed_or_non_object_suppression_body_is_a_400(api, body):
    assert_json_error(raw_json(api, "post", SUPPRESSIONS, body), 400)
    assert not Suppression.objects.exists()


# --- the suppression list: removing ------------------------------------------------------------------


def test_removing_a_suppression_by_id_answers_204_with_no_body(api):
    gone = SuppressionFactory()
    kept = SuppressionFactory()
    response = api.delete(suppression_url(gone.pk))
    assert response.status_code == 204 and response.content == b""
    assert list(Suppression.objects.values_list("pk", flat=True)) == [kept.pk]
    assert_json_error(api.delete(suppression_url(gone.pk)), 404)


def test_removing_a_suppression_by_address_matches_it_whatever_the_case(api):
    SuppressionFactory(email="gone@example.org")
    kept = SuppressionFactory(email="kept@example.org")
    response = api.delete(SUPPRESSIONS + "?email=%20Gone@EXAMPLE.org")
    assert response.status_code == 204 and response.content == b""
    assert list(Suppression.objects.values_list("pk", flat=True)) == [kept.pk]


def test_removing_an_address_that_is_not_suppressed_is_404(api):
    SuppressionFactory(email="kept@example.org")
    assert "detail" in assert_json_error(api.delete(SUPPRESSIONS + "?email=nobody@example.org"), 404)
    assert Suppression.objects.count() == 1


@pytest.mark.parametrize("query", ["", "?email=", "?other=gone@example.org", "?email=gone%00@example.org",
                                   "?email=" + "x" * 400])
def test_removing_by_address_without_a_usable_address_is_a_400(api, query):
    SuppressionFactory(email="gone@example.org")
    assert "email" in assert_json_error(api.delete(SUPPRESSIONS + query), 400)
    assert Suppression.objects.count() == 1


def test_after_removal_the_address_may_be_added_as_a_lead_but_its_stopped_leads_stay_stopped(api, campaign):
    old = LeadFactory(campaign=campaign, email="back@example.org")
    api.post(SUPPRESSIONS, {"email": "back@example.org"}, format="json")

    assert api.delete(SUPPRESSIONS + "?email=back@example.org").status_code == 204

    response = api.post(f"/api/cam/campaigns/{CampaignFactory().pk}/leads", {"email": "back@example.org"},
                        format="json")
    assert response.status_code == 201
    old.refresh_from_db()
    assert (old.next_action_at, old.stopped_reason) == (None, STOPPED_BY_SUPPRESSION)


@pytest.mark.parametrize(("method", "path"), [
    ("put", SUPPRESSIONS), ("patch", SUPPRESSIONS),
    ("put", SUPPRESSIONS + "/{pk}"), ("patch", SUPPRESSIONS + "/{pk}"), ("post", SUPPRESSIONS + "/{pk}"),
])
def test_wrong_methods_on_the_suppression_list_are_405(api, method, path):
    gone = SuppressionFactory(email="gone@example.org")
    response = getattr(api, method)(path.format(pk=gone.pk), {"email": "new@example.org"}, format="json")
    assert "detail" in assert_json_error(response, 405)
    assert list(Suppression.objects.values_list("email", flat=True)) == ["gone@example.org"]
