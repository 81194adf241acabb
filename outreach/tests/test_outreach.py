import time
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.db import IntegrityError, transaction

from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.models import TAG_DO_NOT_CONTACT, Lead
from leads.services import (
    LAST_STEP_REPLY_WAIT_DAYS,
    MAX_SEND_FAILURES,
    followup_delay,
    lead_check_stop,
    Actor,
    lead_as_read,
    lead_mark_replied,
)
from leads.tests.factories import LeadFactory
from outreach.models import OutreachAttempt, Suppression
from outreach.messages import campaign_steps
from outreach.limits import outreach_today
from outreach.claims import attempt_claim, attempt_finish
from outreach.sending import _record_stop, outreach_send_due
from outreach.suppression import suppression_add
from outreach.transport import SendOutcome
from outreach.tests.factories import OutreachAttemptFactory

pytestmark = pytest.mark.django_db
Status = Lead.Status
Sent = OutreachAttempt.Status


def due_leads(campaign, count, now, **fields):
    return [LeadFactory(campaign=campaign, next_action_at=now - timedelta(minutes=1), **fields) for _ in range(count)]


def test_a_live_run_delivers_personalised_mail_and_records_each_attempt(smtp_server, now):
    campaign = CampaignFactory(sender_name="Alex Rivera", sender_email="alex@agency.example")
    lead = LeadFactory(campaign=campaign, first_name="maya", company="BrightLoop", job_title="",
                       next_action_at=now, score=0.5)

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert (result.sent, result.failed, result.skipped) == (1, 0, 0)
    [mail] = smtp_server.messages
    assert mail["To"] == lead.email
    assert mail["From"] == "Alex Rivera <alex@agency.example>"
    assert mail["Subject"] == "Idea for BrightLoop"
    body = mail.get_content()
    assert body.startswith("Hi Maya,")
    assert "someone in your role" in body  # the missing job title's fallback
    assert "{{" not in body and "{%" not in body
    attempt = OutreachAttempt.objects.get()
    assert (attempt.status, attempt.step, attempt.subject) == (Sent.SENT, 1, "Idea for BrightLoop")
    assert mail["Message-ID"] == attempt.message_id
    lead.refresh_from_db()
    assert (lead.status, lead.attempt_count, lead.first_contacted_at) == (Status.CONTACTED, 1, now)
    assert lead.next_action_at == now + followup_delay(3, 0.5)


def test_a_dry_run_sends_nothing_records_nothing_and_changes_no_lead(smtp_server, now):
    campaign = CampaignFactory(max_emails_per_day=2)
    leads = due_leads(campaign, 3, now)
    before = list(Lead.objects.order_by("id").values())

    result = outreach_send_due(campaign=campaign, now=now, dry_run=True)

    assert (result.sent, result.skipped) == (2, 1)
    assert [p["email"] for p in result.previews] == [leads[0].email, leads[1].email]
    assert result.previews[0]["subject"] == "Idea for Acme"
    assert smtp_server.messages == []
    assert not OutreachAttempt.objects.exists()
    assert list(Lead.objects.order_by("id").values()) == before


def test_the_daily_quota_is_never_exceeded_even_on_a_rerun(smtp_server, now):
    campaign = CampaignFactory(max_emails_per_day=5)
    due_leads(campaign, 8, now, score=0.5)

    first = outreach_send_due(campaign=campaign, now=now, dry_run=False)
    second = outreach_send_due(campaign=campaign, now=now + timedelta(hours=1), dry_run=False)

    assert (first.sent, first.skipped) == (5, 3)
    assert (second.sent, second.skipped) == (0, 3)
    assert len(smtp_server.messages) == 5
    assert outreach_today(campaign=campaign, now=now)["sent"] == 5


def test_the_quota_rolls_over_at_midnight_in_the_configured_time_zone(smtp_server, settings):
    settings.TIME_ZONE = "America/New_York"
    campaign = CampaignFactory(max_emails_per_day=2)
    late = datetime(2026, 1, 15, 4, 59, 59, tzinfo=dt_timezone.utc)  # 23:59:59 EST in New York
    due_leads(campaign, 6, late, score=0.5)

    assert outreach_send_due(campaign=campaign, now=late, dry_run=False).sent == 2
    assert outreach_send_due(campaign=campaign, now=late, dry_run=False).sent == 0
    midnight = late + timedelta(seconds=1)  # 00:00:00 the next day in New York, still 05:00 UTC
    assert outreach_send_due(campaign=campaign, now=midnight, dry_run=False).sent == 2
    assert len(smtp_server.messages) == 4


def test_due_leads_are_emailed_highest_score_first(smtp_server, now):
    campaign = CampaignFactory(max_emails_per_day=2)
    low = LeadFactory(campaign=campaign, score=0.3, next_action_at=now)
    top = LeadFactory(campaign=campaign, score=0.95, next_action_at=now)
    middle = LeadFactory(campaign=campaign, score=0.65, next_action_at=now)

    outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert smtp_server.recipients() == [top.email, middle.email]
    low.refresh_from_db()
    assert low.attempt_count == 0


def test_leads_not_yet_due_or_not_yet_verified_get_nothing(smtp_server, now):
    campaign = CampaignFactory()
    LeadFactory(campaign=campaign, next_action_at=now + timedelta(seconds=1))
    LeadFactory(campaign=campaign, status=Status.NEW, next_action_at=now)
    LeadFactory(campaign=campaign, next_action_at=None)

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert (result.sent, result.skipped) == (0, 0)
    assert smtp_server.messages == []


def test_do_not_contact_and_suppressed_leads_are_never_emailed(smtp_server, now):
    campaign = CampaignFactory()
    tagged = LeadFactory(campaign=campaign, tags=[TAG_DO_NOT_CONTACT], next_action_at=now, score=0.9)
    suppressed = LeadFactory(campaign=campaign, next_action_at=now, score=0.9)
    Suppression.objects.create(email=suppressed.email, reason=Suppression.Reason.UNSUBSCRIBED)
    fine = LeadFactory(campaign=campaign, next_action_at=now, score=0.5)

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert smtp_server.recipients() == [fine.email]
    assert (result.sent, result.skipped) == (1, 2)
    skipped = OutreachAttempt.objects.filter(status=Sent.SKIPPED)
    assert {a.lead_id for a in skipped} == {tagged.pk, suppressed.pk}
    tagged.refresh_from_db()
    assert tagged.next_action_at is None
    # Stopped for good: a later cycle neither mails nor records them again.
    outreach_send_due(campaign=campaign, now=now + timedelta(days=5), dry_run=False)
    assert skipped.count() == 2


def test_suppressing_an_address_stops_its_leads_in_every_campaign(now):
    one, other = LeadFactory(email="jo@acme.example", next_action_at=now), LeadFactory(email="jo@acme.example", next_action_at=now)
    suppression_add(email=" Jo@ACME.example ", reason=Suppression.Reason.BOUNCED, now=now)
    assert Suppression.objects.get().email == "jo@acme.example"
    assert Lead.objects.filter(pk__in=[one.pk, other.pk], next_action_at__isnull=True).count() == 2


def test_a_follow_up_goes_out_after_its_delay_in_the_same_thread(smtp_server, now):
    campaign = CampaignFactory()
    MessageStepFactory(campaign=campaign, position=1, subject_template="Idea for {{ company }}")
    MessageStepFactory(campaign=campaign, position=2, delay_days=4, subject_template="Re: Idea for {{ company }}",
                       body_template="Hi {{ first_name }}, following up.")
    lead = LeadFactory(campaign=campaign, score=0.5, next_action_at=now)

    outreach_send_due(campaign=campaign, now=now, dry_run=False)
    follow_up_at = now + followup_delay(4, 0.5)
    assert outreach_send_due(campaign=campaign, now=follow_up_at - timedelta(seconds=1), dry_run=False).sent == 0
    assert outreach_send_due(campaign=campaign, now=follow_up_at, dry_run=False).sent == 1

    first, second = smtp_server.messages
    assert second["Subject"] == "Re: Idea for Acme"
    assert second["In-Reply-To"] == first["Message-ID"]
    text, footer = second.get_content().replace("\r\n", "\n").split("\n\n--\n")
    assert text == "Hi Jane, following up." and "Unsubscribe in one click" in footer
    lead.refresh_from_db()
    assert (lead.attempt_count, lead.status) == (2, Status.CONTACTED)


def test_a_lead_that_used_all_its_attempts_becomes_lost_without_another_mail(smtp_server, now):
    campaign = CampaignFactory(max_attempts_per_lead=2)
    lead = LeadFactory(campaign=campaign, score=0.5, next_action_at=now)
    moment = now
    for _ in range(2):
        assert outreach_send_due(campaign=campaign, now=moment, dry_run=False).sent == 1
        lead.refresh_from_db()
        moment = lead.next_action_at
    # After the last email the lead has a while to reply, then it is LOST.
    assert moment - lead.last_contacted_at == followup_delay(LAST_STEP_REPLY_WAIT_DAYS, 0.5)
    result = outreach_send_due(campaign=campaign, now=moment, dry_run=False)

    lead.refresh_from_db()
    assert (result.sent, result.lost) == (0, 1)
    assert lead.status == Status.LOST
    assert len(smtp_server.messages) == 2


def test_a_temporarily_refused_recipient_is_retried_later_then_given_up(smtp_server, now):
    campaign = CampaignFactory()
    lead = LeadFactory(campaign=campaign, next_action_at=now, email="busy@acme.example")
    smtp_server.refuse[lead.email] = "450 4.2.1 mailbox busy, try later"

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert (result.sent, result.failed) == (0, 1)
    attempt = OutreachAttempt.objects.get()
    assert attempt.status == Sent.FAILED
    assert "450" in attempt.error
    lead.refresh_from_db()
    assert (lead.status, lead.attempt_count) == (Status.ENRICHED, 0)
    assert lead.next_action_at == now + timedelta(hours=1)

    moment = lead.next_action_at
    for _ in range(MAX_SEND_FAILURES - 1):
        outreach_send_due(campaign=campaign, now=moment, dry_run=False)
        lead.refresh_from_db()
        moment = lead.next_action_at or moment
    assert lead.next_action_at is None
    assert f"{MAX_SEND_FAILURES} failed sends" in lead.stopped_reason
    assert OutreachAttempt.objects.filter(status=Sent.FAILED).count() == MAX_SEND_FAILURES
    assert not Suppression.objects.exists()


def test_a_hard_bounce_suppresses_the_address_at_once(smtp_server, now):
    campaign = CampaignFactory()
    lead = LeadFactory(campaign=campaign, next_action_at=now, email="nobody@acme.example")
    elsewhere = LeadFactory(email="nobody@acme.example", next_action_at=now + timedelta(days=1))
    smtp_server.refuse[lead.email] = "550 5.1.1 mailbox unavailable"

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert result.failed == 1
    assert Suppression.objects.get().reason == Suppression.Reason.BOUNCED
    for stopped in (lead, elsewhere):
        stopped.refresh_from_db()
        assert stopped.next_action_at is None


def test_a_connection_lost_after_the_message_was_handed_over_is_never_retried(smtp_server, now):
    campaign = CampaignFactory()
    lead = LeadFactory(campaign=campaign, next_action_at=now, score=0.5)
    smtp_server.disconnect_after_data = True

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    attempt = OutreachAttempt.objects.get()
    assert attempt.status == Sent.UNKNOWN
    # Unknown is not failed: it may have been delivered. Outreach stops for the cycle.
    assert (result.failed, result.unknown, result.stopped) == (0, 1, True)
    assert "may have been delivered" in result.errors[0]
    lead.refresh_from_db()
    assert lead.next_action_at is None and "may or may not have been sent" in lead.stopped_reason
    for later in (now + timedelta(hours=2), now + timedelta(days=3)):
        assert outreach_send_due(campaign=campaign, now=later, dry_run=False).sent == 0
    assert len(smtp_server.messages) == 1  # the server got it once, and only once


def test_a_mail_server_that_is_down_uses_up_no_lead_and_no_quota(smtp_server, settings, now):
    campaign = CampaignFactory()
    leads = due_leads(campaign, 3, now)
    settings.EMAIL_PORT = 9  # nothing listens there

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert (result.sent, result.failed, result.skipped) == (0, 0, 3)
    assert "mail server unavailable" in result.errors[0]
    assert not OutreachAttempt.objects.exists()
    for lead in leads:
        lead.refresh_from_db()
        assert (lead.next_action_at, lead.attempt_count) == (now - timedelta(minutes=1), 0)


def test_a_mail_server_refusing_our_sender_releases_the_claim(smtp_server, now):
    campaign = CampaignFactory(sender_email="blocked@agency.example")
    due_leads(campaign, 2, now)

    async def refuse_sender(server, session, envelope, address, mail_options):
        return "550 5.7.1 sender rejected"

    smtp_server.handle_MAIL = refuse_sender
    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert (result.sent, result.failed) == (0, 0)
    assert "refused our sender: 550 5.7.1 sender rejected" in result.errors[0]
    assert not OutreachAttempt.objects.exists()
    assert Lead.objects.filter(next_action_at__isnull=True).count() == 0


def test_the_database_refuses_a_second_send_of_the_same_step(now):
    attempt = OutreachAttemptFactory(status=Sent.SENT, step=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        OutreachAttempt.objects.create(campaign=attempt.campaign, lead=attempt.lead, step=1, status=Sent.CLAIMED)
    # Failed and skipped attempts do not block a retry; the next step is a different send.
    OutreachAttempt.objects.create(campaign=attempt.campaign, lead=attempt.lead, step=1, status=Sent.FAILED)
    OutreachAttempt.objects.create(campaign=attempt.campaign, lead=attempt.lead, step=2, status=Sent.CLAIMED)


def test_an_interrupted_send_stays_claimed_and_is_never_retried(smtp_server, now):
    campaign = CampaignFactory()
    lead = LeadFactory(campaign=campaign, next_action_at=now)
    # A process claimed the send and died before it reached the mail server.
    claimed = attempt_claim(campaign=campaign, lead=lead, step=1, subject="s", message_id="<m@x>", now=now)
    assert isinstance(claimed, OutreachAttempt)

    for later in (now, now + timedelta(days=1), now + timedelta(days=10)):
        assert outreach_send_due(campaign=campaign, now=later, dry_run=False).sent == 0
    assert smtp_server.messages == []
    claimed.refresh_from_db()
    assert claimed.status == Sent.CLAIMED
    assert outreach_today(campaign=campaign, now=now)["claimed"] == 1


def test_a_claimed_send_counts_against_the_quota(now):
    campaign = CampaignFactory(max_emails_per_day=1)
    first, second = due_leads(campaign, 2, now)
    assert isinstance(attempt_claim(campaign=campaign, lead=first, step=1, subject="", message_id="", now=now), OutreachAttempt)
    assert attempt_claim(campaign=campaign, lead=second, step=1, subject="", message_id="", now=now) == "quota_full"


def test_each_attempt_is_posted_to_the_webhook(smtp_server, webhook, now):
    campaign = CampaignFactory()
    lead = LeadFactory(campaign=campaign, next_action_at=now)

    outreach_send_due(campaign=campaign, now=now, dry_run=False)

    [event] = webhook.events
    attempt = OutreachAttempt.objects.get()
    assert event["event"] == "outreach.sent"
    assert (event["lead_id"], event["email"], event["step"]) == (lead.pk, lead.email, 1)
    assert event["message_id"] == attempt.message_id


def test_a_webhook_that_errors_or_is_down_never_stops_outreach(smtp_server, webhook, settings, now):
    campaign = CampaignFactory()
    due_leads(campaign, 2, now)
    webhook.status = 500
    assert outreach_send_due(campaign=campaign, now=now, dry_run=False).sent == 2

    settings.MAKE_WEBHOOK_URL = "http://127.0.0.1:9/nothing-listens-here"
    due_leads(campaign, 1, now)
    assert outreach_send_due(campaign=campaign, now=now, dry_run=False).sent == 1
    assert len(smtp_server.messages) == 3


def test_a_slow_webhook_costs_at_most_its_timeout(smtp_server, webhook, settings, now):
    settings.CAM_WEBHOOK_TIMEOUT = 0.2
    webhook.delay = 3
    campaign = CampaignFactory()
    due_leads(campaign, 2, now)

    started = time.monotonic()
    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert result.sent == 2
    assert OutreachAttempt.objects.filter(status=Sent.SENT).count() == 2
    # Two events, each abandoned after its timeout instead of the webhook's 3 seconds.
    assert time.monotonic() - started < 3


def test_a_campaign_without_the_email_channel_sends_nothing(smtp_server, now):
    campaign = CampaignFactory(channels_enabled=["linkedin"])
    due_leads(campaign, 2, now)
    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)
    assert result.sent == 0
    assert "email channel not enabled" in result.notes[0]
    assert smtp_server.messages == []


def test_a_broken_step_template_is_reported_and_sends_nothing(smtp_server, now):
    campaign = CampaignFactory()
    MessageStepFactory(campaign=campaign, position=1, body_template="Hi {% if %}")  # bypasses clean()
    due_leads(campaign, 2, now)

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert result.sent == 0
    assert len(result.errors) == 2 and "step 1 cannot be rendered" in result.errors[0]
    assert smtp_server.messages == []
    assert not OutreachAttempt.objects.exists()


def test_a_reply_recorded_while_the_cycle_runs_is_not_overwritten_by_lost(now):
    campaign = CampaignFactory(max_attempts_per_lead=3)
    lead = LeadFactory(campaign=campaign, status=Status.CONTACTED, attempt_count=3, next_action_at=now,
                       first_contacted_at=now - timedelta(days=8))
    as_read_by_the_cycle = Lead.objects.get(pk=lead.pk)
    read = lead_as_read(Lead.objects.get(pk=lead.pk))
    lead_mark_replied(lead=Lead.objects.get(pk=lead.pk), now=now)  # staff, meanwhile

    reason = lead_check_stop(lead=as_read_by_the_cycle, campaign=campaign, now=now, suppressed=False, steps=3)
    assert as_read_by_the_cycle.status == Status.LOST and reason
    assert _record_stop(as_read_by_the_cycle, campaign, reason, now, read, Actor("test")) is False

    lead.refresh_from_db()
    assert (lead.status, lead.stopped_reason) == (Status.REPLIED, "replied")


def test_a_reply_recorded_while_the_mail_was_on_its_way_is_kept(now):
    campaign = CampaignFactory()
    lead = LeadFactory(campaign=campaign, next_action_at=now, score=0.5)
    attempt = attempt_claim(campaign=campaign, lead=lead, step=1, subject="s", message_id="<m@x>", now=now)
    lead_mark_replied(lead=Lead.objects.get(pk=lead.pk), now=now)

    finished = attempt_finish(attempt=attempt, campaign=campaign, outcome=SendOutcome(Sent.SENT), now=now,
                              steps=campaign_steps(campaign), actor=Actor("test"))

    assert (finished.status, finished.attempt_count, finished.next_action_at) == (Status.REPLIED, 1, None)


def test_a_cycle_marks_a_lead_lost_thirty_days_after_first_contact(smtp_server, now):
    campaign = CampaignFactory()
    MessageStepFactory(campaign=campaign, position=1)
    MessageStepFactory(campaign=campaign, position=2, delay_days=40)
    lead = LeadFactory(campaign=campaign, score=0.5, next_action_at=now)
    outreach_send_due(campaign=campaign, now=now, dry_run=False)
    lead.refresh_from_db()
    assert lead.next_action_at >= now + timedelta(days=30)  # the follow-up would come on day 30 or later

    result = outreach_send_due(campaign=campaign, now=lead.next_action_at, dry_run=False)

    lead.refresh_from_db()
    assert (result.sent, result.lost) == (0, 1)
    assert (lead.status, lead.stopped_reason) == (Status.LOST, "no reply 30 days after first contact")
    assert len(smtp_server.messages) == 1
