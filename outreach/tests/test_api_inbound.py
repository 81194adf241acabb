"""Staff and what came back (SPEC §9): `GET /api/cam/inbound` lists it with filters, `PATCH
/api/cam/inbound/{id}` reclassifies a message (its effects undone where that is safe, the new
kind's applied) or records what a reply came to. The messages are real samples, stored and acted
on by the reader's own service after a real send; qualification by reply is a campaign setting."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.models import Lead, LeadEvent
from leads.tests.factories import LeadFactory
from outreach.inbound import message_parse
from outreach.models import InboundMessage, OutreachAttempt, Suppression
from outreach.replies import inbound_store
from outreach.sending import outreach_send_due

pytestmark = pytest.mark.django_db
MAIL = Path(__file__).parent / "mail"
Status = Lead.Status


def contacted(smtp_server, *emails, **campaign_fields):
    campaign = CampaignFactory(max_emails_per_day=50, target_clients=100, qualification_threshold=0.9,
                               **campaign_fields)
    for position in (1, 2, 3):
        MessageStepFactory(campaign=campaign, position=position, delay_days=2)
    now = timezone.now()
    leads = [LeadFactory(campaign=campaign, email=email, score=0.5, next_action_at=now) for email in emails]
    assert outreach_send_due(campaign=campaign, now=now, dry_run=False).sent == len(emails)
    return campaign, [Lead.objects.get(pk=lead.pk) for lead in leads]


def receive(name: str, lead: Lead, **replace) -> InboundMessage:
    raw = (MAIL / name).read_text()
    original = {"gmail_reply.eml": "<177313.1@agency.example>", "postfix_hard_bounce.eml": "<177313.9@agency.example>",
                "unsubscribe_reply.eml": "<177313.3@agency.example>", "ooo_auto_submitted.eml": "<177313.1@agency.example>"}
    raw = raw.replace(original[name], lead.attempts.get(step=1).message_id)
    for old, new in replace.items():
        raw = raw.replace(old, new)
    return inbound_store(parsed=message_parse(raw.encode()), now=timezone.now())


def test_the_inbox_lists_messages_by_kind_campaign_and_match(api, smtp_server):
    campaign, (jane, nobody) = contacted(smtp_server, "jane@acme.example", "nobody@acme.example")
    other, (bob,) = contacted(smtp_server, "bob@acme.example")
    reply = receive("gmail_reply.eml", jane)
    bounce = receive("postfix_hard_bounce.eml", nobody)
    unsubscribe = receive("unsubscribe_reply.eml", bob)
    stranger = inbound_store(parsed=message_parse(b"From: x@y.example\r\nSubject: Hi\r\n\r\nHello\r\n"), now=timezone.now())

    def ids(query=""):
        response = api.get(f"/api/cam/inbound{query}")
        assert response.status_code == 200, response.content
        return [item["id"] for item in response.json()["results"]]

    assert ids() == [stranger.pk, unsubscribe.pk, bounce.pk, reply.pk]
    assert ids(f"?campaign={campaign.pk}") == [bounce.pk, reply.pk]
    assert ids(f"?campaign={campaign.pk}&kind=reply") == [reply.pk]
    assert ids("?matched=false") == [stranger.pk]
    item = api.get("/api/cam/inbound?kind=bounce").json()["results"][0]
    assert (item["lead"], item["lead_status"], item["campaign"], item["step"], item["bounce_hard"]) == (
        nobody.pk, "LOST", campaign.pk, 1, True)
    assert item["action"].startswith("nobody@acme.example suppressed")
    for bad in ("?kind=spam", "?campaign=abc", "?matched=maybe"):
        response = api.get(f"/api/cam/inbound{bad}")
        assert response.status_code == 400 and response.json()


def test_a_reply_reclassified_as_out_of_office_puts_the_lead_back_and_delays_its_follow_up(api, smtp_server):
    campaign, (jane,) = contacted(smtp_server, "jane@acme.example")
    due = jane.next_action_at
    reply = receive("gmail_reply.eml", jane)
    jane.refresh_from_db()
    assert jane.status == Status.REPLIED

    response = api.patch(f"/api/cam/inbound/{reply.pk}", {"kind": "auto_reply"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["kind"] == "auto_reply" and body["reviewed_by"]
    assert body["action"].startswith(f"lead #{jane.pk} back to CONTACTED; then lead #{jane.pk}: next email delayed")
    jane.refresh_from_db()
    assert jane.status == Status.CONTACTED and jane.replied_at is None
    assert jane.next_action_at > due + timedelta(days=4)  # a week from now, not in two days

    # And back: a reply after all.
    assert api.patch(f"/api/cam/inbound/{reply.pk}", {"kind": "reply"}, format="json").status_code == 200
    jane.refresh_from_db()
    assert (jane.status, jane.next_action_at) == (Status.REPLIED, None)


def test_a_bounce_reclassified_as_a_reply_lifts_its_suppression_and_the_bounce(api, smtp_server):
    campaign, (nobody,) = contacted(smtp_server, "nobody@acme.example")
    bounce = receive("postfix_hard_bounce.eml", nobody)
    assert Suppression.objects.filter(email=nobody.email).exists()

    response = api.patch(f"/api/cam/inbound/{bounce.pk}", {"kind": "reply"}, format="json")

    assert response.status_code == 200, response.content
    assert not Suppression.objects.exists()
    assert OutreachAttempt.objects.get(lead=nobody).bounced_at is None
    nobody.refresh_from_db()
    assert nobody.status == Status.REPLIED


def test_an_unsubscribe_reclassified_keeps_a_suppression_it_did_not_make(api, smtp_server):
    campaign, (bob,) = contacted(smtp_server, "bob@acme.example")
    unsubscribe = receive("unsubscribe_reply.eml", bob)
    assert api.patch(f"/api/cam/inbound/{unsubscribe.pk}", {"kind": "reply"}, format="json").status_code == 200
    assert not Suppression.objects.exists()  # it made it: lifted

    Suppression.objects.create(email="bob@acme.example", reason=Suppression.Reason.MANUAL)
    again = receive("unsubscribe_reply.eml", bob, **{"<unsub-1@acme.example>": "<unsub-2@acme.example>"})
    assert api.patch(f"/api/cam/inbound/{again.pk}", {"kind": "reply"}, format="json").status_code == 200
    assert Suppression.objects.get().reason == Suppression.Reason.MANUAL  # staff's own stays


@pytest.mark.parametrize("outcome, status", [("interested", Status.QUALIFIED), ("not_interested", Status.LOST)])
def test_staff_record_what_a_reply_came_to(api, smtp_server, outcome, status):
    campaign, (jane,) = contacted(smtp_server, "jane@acme.example")
    reply = receive("gmail_reply.eml", jane)
    response = api.patch(f"/api/cam/inbound/{reply.pk}", {"outcome": outcome}, format="json")
    assert response.status_code == 200 and response.json()["outcome"] == outcome
    jane.refresh_from_db()
    assert jane.status == status
    assert jane.events.filter(kind=LeadEvent.Kind.STATUS, actor__startswith="staff ").exists()


def test_invalid_changes_are_400_with_field_errors_and_an_unmatched_outcome_is_409(api, smtp_server):
    stranger = inbound_store(parsed=message_parse(b"From: x@y.example\r\nSubject: Hi\r\n\r\nHello\r\n"), now=timezone.now())
    for body, field in (({"kind": "spam"}, "kind"), ({"outcome": "maybe"}, "outcome"), ({}, "non_field_errors"),
                        ({"kind": "reply", "status": "QUALIFIED"}, "status")):
        response = api.patch(f"/api/cam/inbound/{stranger.pk}", body, format="json")
        assert response.status_code == 400 and field in response.json(), (body, response.content)
    response = api.patch(f"/api/cam/inbound/{stranger.pk}", {"outcome": "interested"}, format="json")
    assert response.status_code == 409 and "not matched to a lead" in response.json()["detail"]
    assert api.patch("/api/cam/inbound/999999", {"kind": "reply"}, format="json").status_code == 404


def test_a_read_only_user_sees_the_inbox_but_cannot_change_it(viewer_api, smtp_server):
    stranger = inbound_store(parsed=message_parse(b"From: x@y.example\r\nSubject: Hi\r\n\r\nHello\r\n"), now=timezone.now())
    assert viewer_api.get("/api/cam/inbound").status_code == 200
    assert viewer_api.patch(f"/api/cam/inbound/{stranger.pk}", {"kind": "bounce"}, format="json").status_code == 403
    assert InboundMessage.objects.get().kind == "reply"


def test_a_campaign_qualifying_on_replies_keeps_following_up_a_hot_lead_until_staff_call_its_reply_interested(
    api, smtp_server
):
    by_score, (hot_a,) = contacted(smtp_server, "a@hot.example")
    Lead.objects.filter(pk=hot_a.pk).update(status=Status.ENRICHED, attempt_count=0, next_action_at=timezone.now(),
                                            tags=["hot"])
    OutreachAttempt.objects.all().delete()
    assert outreach_send_due(campaign=by_score, now=timezone.now(), dry_run=False).sent == 1
    hot_a.refresh_from_db()
    assert hot_a.status == Status.QUALIFIED  # the original rule: hot and emailed is qualified

    by_reply = CampaignFactory(max_emails_per_day=50, target_clients=100, qualify_on="reply")
    for position in (1, 2):
        MessageStepFactory(campaign=by_reply, position=position, delay_days=2)
    hot_b = LeadFactory(campaign=by_reply, email="b@hot.example", score=0.99, tags=["hot"],
                        next_action_at=timezone.now())
    assert outreach_send_due(campaign=by_reply, now=timezone.now(), dry_run=False).sent == 1
    hot_b.refresh_from_db()
    assert hot_b.status == Status.CONTACTED and hot_b.next_action_at is not None  # follow-ups go on
    reply = receive("gmail_reply.eml", hot_b)
    hot_b.refresh_from_db()
    assert hot_b.status == Status.REPLIED
    api.patch(f"/api/cam/inbound/{reply.pk}", {"outcome": "interested"}, format="json")
    hot_b.refresh_from_db()
    assert hot_b.status == Status.QUALIFIED

    response = api.post("/api/cam/campaigns", {"name": "By reply", "qualify_on": "replies"}, format="json")
    assert response.status_code == 400 and "qualify_on" in response.json()
