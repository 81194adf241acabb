from datetime import timedelta

import pytest

from campaigns.cycle import cycle_run
from campaigns.services import RESUME_GRACE, campaign_metrics, campaign_pause, campaign_pause_reason, campaign_resume
from campaigns.tests.factories import CampaignFactory
from leads.models import Lead
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db
Status = Lead.Status


def leads(campaign, status, count, **fields):
    return [LeadFactory(campaign=campaign, status=status, next_action_at=None, **fields) for _ in range(count)]


def test_metrics_count_each_status_and_derive_the_rates(django_assert_num_queries):
    campaign = CampaignFactory(target_clients=4)
    leads(campaign, Status.NEW, 3)
    leads(campaign, Status.CONTACTED, 2, first_contacted_at="2026-03-01T00:00Z")
    leads(campaign, Status.QUALIFIED, 1, first_contacted_at="2026-03-01T00:00Z")
    leads(campaign, Status.LOST, 2, first_contacted_at="2026-03-01T00:00Z")
    LeadFactory(status=Status.QUALIFIED)  # another campaign's

    with django_assert_num_queries(1):
        metrics = campaign_metrics(campaign=campaign)

    assert (metrics.total_leads, metrics.new_leads, metrics.contacted_leads) == (8, 3, 2)
    assert (metrics.qualified_leads, metrics.lost_leads, metrics.ever_contacted) == (1, 2, 5)
    assert metrics.conversion_rate == 0.125
    assert metrics.goal_progress == 0.25


def test_an_empty_campaign_has_zero_rates():
    metrics = campaign_metrics(campaign=CampaignFactory())
    assert (metrics.total_leads, metrics.conversion_rate, metrics.goal_progress) == (0, 0.0, 0.0)


def test_the_goal_is_met_when_qualified_reaches_the_target(now):
    campaign = CampaignFactory(target_clients=2, created_at=now)
    leads(campaign, Status.QUALIFIED, 1)
    assert campaign_pause_reason(campaign=campaign, metrics=campaign_metrics(campaign=campaign), now=now) is None
    leads(campaign, Status.QUALIFIED, 1)
    reason = campaign_pause_reason(campaign=campaign, metrics=campaign_metrics(campaign=campaign), now=now)
    assert reason == "goal met: 2 qualified of 2 wanted"


def test_a_lost_rate_over_half_pauses_only_once_enough_leads_were_contacted(now):
    campaign = CampaignFactory(created_at=now)
    contacted = {"first_contacted_at": now}
    leads(campaign, Status.LOST, 5, **contacted)
    leads(campaign, Status.CONTACTED, 4, **contacted)
    # 5 of 9 lost is over half, but 9 contacted leads are too few to judge.
    assert campaign_pause_reason(campaign=campaign, metrics=campaign_metrics(campaign=campaign), now=now) is None

    leads(campaign, Status.CONTACTED, 1, **contacted)  # 5 of 10: exactly half is not over half
    assert campaign_pause_reason(campaign=campaign, metrics=campaign_metrics(campaign=campaign), now=now) is None

    leads(campaign, Status.LOST, 1, **contacted)  # 6 of 11
    reason = campaign_pause_reason(campaign=campaign, metrics=campaign_metrics(campaign=campaign), now=now)
    assert reason.startswith("failing: 6 of 11 contacted leads lost")


def test_a_campaign_90_days_old_without_a_qualified_lead_is_failing(now):
    young = CampaignFactory(created_at=now - timedelta(days=90) + timedelta(seconds=1))
    assert campaign_pause_reason(campaign=young, metrics=campaign_metrics(campaign=young), now=now) is None

    old = CampaignFactory(created_at=now - timedelta(days=90))
    reason = campaign_pause_reason(campaign=old, metrics=campaign_metrics(campaign=old), now=now)
    assert reason == "failing: 90 days old with no qualified lead"

    leads(old, Status.QUALIFIED, 1)
    assert campaign_pause_reason(campaign=old, metrics=campaign_metrics(campaign=old), now=now) is None


def test_a_live_cycle_pauses_a_campaign_whose_goal_is_met_with_the_reason(smtp_server, now):
    campaign = CampaignFactory(target_clients=1, created_at=now)
    leads(campaign, Status.QUALIFIED, 1)

    result = cycle_run(campaign=campaign, now=now, dry_run=False)

    campaign.refresh_from_db()
    assert (result.campaign_paused, campaign.active) == (True, False)
    assert campaign.pause_reason == result.pause_reason == "goal met: 1 qualified of 1 wanted"
    assert campaign.paused_at == now


def test_a_dry_run_only_says_the_campaign_would_pause(now):
    campaign = CampaignFactory(target_clients=1, created_at=now)
    leads(campaign, Status.QUALIFIED, 1)

    result = cycle_run(campaign=campaign, now=now, dry_run=True)

    campaign.refresh_from_db()
    assert campaign.active and not result.campaign_paused
    assert "would be paused (goal met" in result.notes[-1]


def test_outreach_stops_as_soon_as_the_goal_is_met(smtp_server, now):
    campaign = CampaignFactory(target_clients=2, max_emails_per_day=10, created_at=now)
    for _ in range(5):
        LeadFactory(campaign=campaign, score=0.95, next_action_at=now)  # qualifies when contacted

    result = cycle_run(campaign=campaign, now=now, dry_run=False)

    assert result.outreach_sent == 2
    assert len(smtp_server.messages) == 2
    assert result.campaign_paused and result.pause_reason.startswith("goal met")


def test_a_paused_campaign_is_left_alone(smtp_server, now):
    campaign = CampaignFactory(active=False, pause_reason="holiday")
    LeadFactory(campaign=campaign, next_action_at=now)
    result = cycle_run(campaign=campaign, now=now, dry_run=False)
    assert (result.campaign_paused, result.pause_reason, result.outreach_sent) == (True, "holiday", 0)
    assert smtp_server.messages == []


def test_staff_resuming_a_failing_campaign_overrule_the_failing_rules_for_a_while(now):
    campaign = CampaignFactory(created_at=now - timedelta(days=120))
    campaign_pause(campaign=campaign, reason="failing: 120 days old with no qualified lead", now=now)
    campaign_resume(campaign=campaign, now=now)
    assert (campaign.active, campaign.pause_reason, campaign.paused_at) == (True, "", None)

    metrics = campaign_metrics(campaign=campaign)
    assert campaign_pause_reason(campaign=campaign, metrics=metrics, now=now + RESUME_GRACE - timedelta(seconds=1)) is None
    assert campaign_pause_reason(campaign=campaign, metrics=metrics, now=now + RESUME_GRACE).startswith("failing")


def test_a_met_goal_pauses_even_right_after_a_resume(now):
    campaign = CampaignFactory(target_clients=1, created_at=now)
    leads(campaign, Status.QUALIFIED, 1)
    campaign_resume(campaign=campaign, now=now)
    assert campaign_pause_reason(campaign=campaign, metrics=campaign_metrics(campaign=campaign), now=now).startswith("goal met")
