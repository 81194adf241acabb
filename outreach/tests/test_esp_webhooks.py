"""ESP webhooks (SPEC §9): Postmark's tracking and inbound calls, as Postmark posts them, through
django-anymail's real webhook views to CAM's classification. The emails they are about were sent
through a Postmark mailbox against a local stand-in for Postmark's API, so the attempts carry
Postmark's message ids. Calls without the webhook secret, or with a wrong one, change nothing;
an event posted twice is applied once."""

import base64
import json
from pathlib import Path

import pytest
from django.utils import timezone

from leads.models import Lead
from leads.tests.factories import LeadFactory
from outreach.models import InboundMessage, OutreachAttempt, Suppression
from outreach.sending import outreach_send_due
from outreach.tests.test_esp_mailbox import esp_campaign

pytestmark = pytest.mark.django_db
SECRET = "postmark:hook-secret-1"
MAIL = Path(__file__).parent / "mail"


@pytest.fixture
def sent(postmark, settings):
    """Two leads emailed through a Postmark mailbox: Postmark's ids pm-1 and pm-2."""
    settings.CAM_WEBHOOK_SECRET = SECRET
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    mailbox, campaign = esp_campaign(postmark.url, from_email="alex@agency.example")
    now = timezone.now()
    leads = [LeadFactory(campaign=campaign, email=email, score=0.5 - i / 10, next_action_at=now)
             for i, email in enumerate(("jane@acme.example", "bob@acme.example"))]
    assert outreach_send_due(campaign=campaign, now=now, dry_run=False).sent == 2
    by_email = {lead.email: lead for lead in leads}
    return {a.provider_message_id: by_email[a.lead.email] for a in OutreachAttempt.objects.select_related("lead")}


def post(client, path: str, payload: dict, auth: str | None = SECRET):
    headers = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    return client.post(path, data=json.dumps(payload), content_type="application/json", **headers)


def bounce(message_id: str, email: str, kind: str = "HardBounce", event_id: int = 42) -> dict:
    return {"RecordType": "Bounce", "ID": event_id, "Type": kind, "TypeCode": 1, "MessageID": message_id,
            "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            "Email": email, "From": "alex@agency.example", "BouncedAt": "2026-03-10T10:05:00Z", "Inactive": True,
            "MessageStream": "outbound", "Metadata": {}, "Tag": ""}


def test_a_postmark_hard_bounce_suppresses_the_address_and_loses_the_lead_once_however_often_it_is_posted(
    client, sent
):
    lead = sent["pm-1"]
    for _ in range(3):  # Postmark retries a call it thinks failed
        assert post(client, "/anymail/postmark/tracking/", bounce("pm-1", lead.email)).status_code == 200

    lead.refresh_from_db()
    assert (lead.status, lead.next_action_at) == (Lead.Status.LOST, None)
    assert Suppression.objects.get().reason == Suppression.Reason.BOUNCED
    assert OutreachAttempt.objects.get(provider_message_id="pm-1").bounced_at is not None
    stored = InboundMessage.objects.get()
    assert (stored.kind, stored.bounce_hard, stored.matched_by, stored.provider_event_id) == (
        "bounce", True, "message_id", "Postmark:tracking:42")
    assert stored.evidence["event"] == "bounced" and "5.1.1" in stored.text


def test_a_postmark_soft_bounce_is_noted_and_changes_nothing(client, sent):
    lead = Lead.objects.get(pk=sent["pm-1"].pk)
    due = lead.next_action_at
    assert post(client, "/anymail/postmark/tracking/",
                bounce("pm-1", lead.email, kind="SoftBounce", event_id=7)).status_code == 200
    lead.refresh_from_db()
    assert (lead.status, lead.next_action_at) == (Lead.Status.CONTACTED, due)
    assert not Suppression.objects.exists() and InboundMessage.objects.get().bounce_hard is False


def test_a_spam_complaint_and_an_unsubscribe_suppress_their_addresses_as_such(client, sent):
    jane, bob = sent["pm-1"], sent["pm-2"]
    complaint = {"RecordType": "SpamComplaint", "ID": 99, "Type": "SpamComplaint", "MessageID": "pm-1",
                 "Email": jane.email, "BouncedAt": "2026-03-10T11:00:00Z", "Details": "", "Description": ""}
    unsubscribe = {"RecordType": "SubscriptionChange", "MessageID": "pm-2", "Recipient": bob.email,
                   "ChangedAt": "2026-03-10T11:01:00Z", "SuppressSending": True,
                   "SuppressionReason": "ManualSuppression", "Origin": "Recipient", "MessageStream": "outbound"}
    assert post(client, "/anymail/postmark/tracking/", complaint).status_code == 200
    assert post(client, "/anymail/postmark/tracking/", unsubscribe).status_code == 200
    assert post(client, "/anymail/postmark/tracking/", unsubscribe).status_code == 200  # no event id: same call

    assert dict(Suppression.objects.values_list("email", "reason")) == {
        jane.email: Suppression.Reason.COMPLAINED, bob.email: Suppression.Reason.UNSUBSCRIBED}
    assert InboundMessage.objects.count() == 2
    for lead in (jane, bob):
        lead.refresh_from_db()
        assert lead.next_action_at is None


def test_a_reply_received_by_postmark_inbound_makes_the_lead_replied(client, sent):
    jane = sent["pm-1"]
    attempt = OutreachAttempt.objects.get(provider_message_id="pm-1")
    raw = (MAIL / "gmail_reply.eml").read_text().replace("<177313.1@agency.example>", attempt.message_id)
    raw = raw.replace("alex0@agency.example", "alex@agency.example")
    payload = {"RecordType": "Inbound", "MessageID": "in-1", "From": jane.email, "To": "alex@agency.example",
               "FromFull": {"Email": jane.email, "Name": "Jane"}, "ToFull": [{"Email": "alex@agency.example"}],
               "Subject": "Re: Idea", "Headers": [], "RawEmail": raw, "Date": "Tue, 10 Mar 2026 11:02:33 +0100"}

    assert post(client, "/anymail/postmark/inbound/", payload).status_code == 200
    assert post(client, "/anymail/postmark/inbound/", payload).status_code == 200

    jane.refresh_from_db()
    assert jane.status == Lead.Status.REPLIED
    stored = InboundMessage.objects.get()
    assert (stored.kind, stored.matched_by, stored.mailbox.from_email) == ("reply", "message_id", "alex@agency.example")
    assert stored.text.startswith("Hi Alex,")


@pytest.mark.parametrize("auth", [None, "postmark:wrong", "someone:hook-secret-1"])
def test_unsigned_or_forged_calls_change_nothing(client, sent, auth):
    lead = sent["pm-1"]
    response = post(client, "/anymail/postmark/tracking/", bounce("pm-1", lead.email), auth=auth)
    assert response.status_code in (400, 401, 403)
    lead.refresh_from_db()
    assert lead.status == Lead.Status.CONTACTED
    assert not Suppression.objects.exists() and not InboundMessage.objects.exists()


def test_without_a_webhook_secret_every_call_is_refused(client, sent, settings):
    settings.CAM_WEBHOOK_SECRET = ""
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": None}
    lead = sent["pm-1"]
    for auth in (None, SECRET):
        response = post(client, "/anymail/postmark/tracking/", bounce("pm-1", lead.email), auth=auth)
        assert response.status_code == 403 and "CAM_WEBHOOK_SECRET" in response.json()["detail"]
    assert not Suppression.objects.exists() and not InboundMessage.objects.exists()


def test_a_webhook_event_with_nul_characters_is_stored_without_them(client, sent):
    lead = sent["pm-1"]
    event = bounce("pm-1", lead.email, event_id=8) | {"Details": "smtp;550 5.1.1 \u0000gone\u0000",
                                                       "Description": "no\u0000body"}
    assert post(client, "/anymail/postmark/tracking/", event).status_code == 200
    stored = InboundMessage.objects.get()
    assert "\x00" not in stored.text and "gone" in stored.text
    assert Suppression.objects.get().email == lead.email
