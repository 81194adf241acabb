"""A mailbox that sends through an ESP's API (django-anymail's Postmark backend, the real adapter
code), against a local HTTP server standing in for Postmark: the ESP's message id is kept on the
attempt, a refused API key switches the mailbox off, a refused message is a failed attempt, and
an API that cannot be reached releases the claim."""

import pytest

from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.models import Lead
from leads.tests.factories import LeadFactory
from outreach.models import Mailbox, OutreachAttempt, Suppression
from outreach.sending import outreach_send_due
from outreach.tests.factories import MailboxFactory
from conftest import free_port

pytestmark = pytest.mark.django_db


def esp_campaign(api_url: str, **mailbox_fields):
    mailbox = MailboxFactory(kind=Mailbox.Kind.ESP, esp=Mailbox.Esp.POSTMARK, esp_api_key="server-token-1",
                             esp_settings={"api_url": api_url}, smtp_host="", **mailbox_fields)
    campaign = CampaignFactory(target_clients=100)
    MessageStepFactory(campaign=campaign, position=1)
    mailbox.campaigns.add(campaign)
    return mailbox, campaign


def test_an_esp_mailbox_sends_through_the_api_and_keeps_the_esps_message_id(postmark, now):
    mailbox, campaign = esp_campaign(postmark.url)
    lead = LeadFactory(campaign=campaign, score=0.5, next_action_at=now)

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert result.sent == 1
    (request,) = postmark.requests
    assert request["path"] == "/email" and request["token"] == "server-token-1"
    assert request["json"]["To"] == lead.email and "Unsubscribe in one click" in request["json"]["TextBody"]
    headers = {h["Name"]: h["Value"] for h in request["json"]["Headers"]}
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    attempt = OutreachAttempt.objects.get(lead=lead)
    assert (attempt.status, attempt.mailbox_id, attempt.provider_message_id) == ("sent", mailbox.pk, "pm-1")


def test_a_refused_api_key_switches_the_esp_mailbox_off_and_releases_the_claim(postmark, now):
    postmark.status, postmark.answer = 401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."}
    mailbox, campaign = esp_campaign(postmark.url)
    lead = LeadFactory(campaign=campaign, score=0.5, next_action_at=now)

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    mailbox.refresh_from_db()
    assert not mailbox.active and "refused the API key" in mailbox.last_error
    assert result.sent == 0 and not OutreachAttempt.objects.exists()
    lead.refresh_from_db()
    assert lead.next_action_at == now and lead.attempt_count == 0  # it waits for the mailbox


def test_a_recipient_the_esp_refuses_is_a_failed_attempt_and_a_hard_bounce(postmark, now):
    mailbox, campaign = esp_campaign(postmark.url)
    lead = LeadFactory(campaign=campaign, score=0.5, next_action_at=now)
    postmark.status, postmark.answer = 422, {"ErrorCode": 300, "Message": f"Invalid 'To' address: '{lead.email}'."}

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    attempt = OutreachAttempt.objects.get(lead=lead)
    assert result.failed == 1 and attempt.status == "failed" and "recipient refused by the ESP" in attempt.error
    assert attempt.bounced_at == now and Suppression.objects.filter(email=lead.email, reason="bounced").exists()
    mailbox.refresh_from_db()
    assert mailbox.active


def test_a_message_the_esp_refuses_for_itself_is_a_failed_attempt(postmark, now):
    mailbox, campaign = esp_campaign(postmark.url)
    lead = LeadFactory(campaign=campaign, score=0.5, next_action_at=now)
    postmark.status, postmark.answer = 422, {"ErrorCode": 300, "Message": "Invalid metadata content."}

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    attempt = OutreachAttempt.objects.get(lead=lead)
    assert result.failed == 1 and attempt.status == "failed" and "Invalid metadata content" in attempt.error
    assert attempt.bounced_at is None and Lead.objects.get(pk=lead.pk).status == lead.status


def test_an_esp_that_cannot_be_reached_releases_the_claim(now):
    mailbox, campaign = esp_campaign(f"http://127.0.0.1:{free_port()}/")
    lead = LeadFactory(campaign=campaign, score=0.5, next_action_at=now)

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert result.sent == 0 and result.released == 1
    assert not OutreachAttempt.objects.exists()
    assert Lead.objects.get(pk=lead.pk).next_action_at == now
