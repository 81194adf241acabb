"""The send task (SPEC §8): every minute, live campaigns send what their mailboxes allow by then,
so a day's mail is spread over the window by the gap instead of going out in one burst; it
takes no lease but gives way to a running cycle, and keeps a run record only when it did
something."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ

from campaigns.models import CycleRun
from campaigns.runs import cycle_start, lease_take
from campaigns.tasks import campaign_send, campaign_sends_fan_out
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.tests.factories import LeadFactory
from outreach.tests.factories import MailboxFactory

pytestmark = pytest.mark.django_db
ADDRESS = "Agency SAS, 12 rue de la Paix, 75002 Paris"


def live_campaign_with_mailbox(server, **mailbox_fields):
    campaign = CampaignFactory(live=True, postal_address=ADDRESS, target_clients=100, max_emails_per_day=50)
    MessageStepFactory(campaign=campaign, position=1)
    mailbox = MailboxFactory(smtp_port=server.port, **mailbox_fields)
    mailbox.campaigns.add(campaign)
    return campaign, mailbox


def test_minute_by_minute_the_send_task_spreads_a_mailboxs_mail_by_its_gap(smtp_servers):
    server = smtp_servers()
    campaign, mailbox = live_campaign_with_mailbox(server, min_gap_seconds=120, daily_cap=5)
    start = timezone.now().replace(second=0, microsecond=0)
    for _ in range(8):
        LeadFactory(campaign=campaign, score=0.5, next_action_at=start - timedelta(minutes=1))

    sent_by_minute = [
        cycle_start(campaign=campaign, trigger=CycleRun.Trigger.SEND, dry_run=None, send_only=True,
                    now=start + timedelta(minutes=minute)).outreach_sent
        for minute in range(12)
    ]

    # One every two minutes (the gap) until the cap of 5: never a burst.
    assert sent_by_minute == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0]
    # Only the runs that sent are kept; the idle minutes leave no record.
    assert CycleRun.objects.filter(campaign=campaign, trigger="send").count() == 5


def test_the_fan_out_queues_only_live_campaigns_with_mail_due_and_no_cycle_running(smtp_servers):
    server = smtp_servers()
    due, _ = live_campaign_with_mailbox(server)
    LeadFactory(campaign=due, score=0.5, next_action_at=timezone.now() - timedelta(minutes=1))
    nothing_due, _ = live_campaign_with_mailbox(server)
    LeadFactory(campaign=nothing_due, score=0.5, next_action_at=timezone.now() + timedelta(days=1))
    dry = CampaignFactory(live=False)
    LeadFactory(campaign=dry, score=0.5, next_action_at=timezone.now() - timedelta(minutes=1))
    busy, _ = live_campaign_with_mailbox(server)
    LeadFactory(campaign=busy, score=0.5, next_action_at=timezone.now() - timedelta(minutes=1))
    lease_take(campaign_id=busy.pk, holder="cycle:1:x")

    assert campaign_sends_fan_out() == 1

    (queued,) = [task.task for task in OrmQ.objects.all()]
    assert (queued["func"], queued["args"]) == ("campaigns.tasks.campaign_send", (due.pk,))
    assert campaign_send(due.pk)["sent"] == 1
    assert [m["To"] for m in server.messages] == [due.leads.get().email]


def test_a_send_task_gives_way_to_a_running_cycle_and_sends_nothing(smtp_servers):
    server = smtp_servers()
    campaign, _ = live_campaign_with_mailbox(server)
    LeadFactory(campaign=campaign, score=0.5, next_action_at=timezone.now() - timedelta(minutes=1))
    lease_take(campaign_id=campaign.pk, holder="cycle:1:x")

    summary = campaign_send(campaign.pk)

    assert summary["already_running"] and summary["sent"] == 0 and server.messages == []


def test_a_send_task_for_a_campaign_no_longer_live_does_nothing(smtp_servers):
    server = smtp_servers()
    campaign, _ = live_campaign_with_mailbox(server)
    LeadFactory(campaign=campaign, score=0.5, next_action_at=timezone.now() - timedelta(minutes=1))
    campaign.live = False
    campaign.save()

    assert "not live" in campaign_send(campaign.pk)["note"] and server.messages == []
