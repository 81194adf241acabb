"""The campaign's lease and run history (SPEC §7), in one process; test_scheduler.py runs
them across processes and qcluster workers."""

import io
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import runs
from campaigns.models import Campaign, CycleLease, CycleRun
from campaigns.runs import cycle_start, lease_release, lease_renew, lease_take
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db


def test_a_held_lease_refuses_a_second_holder_until_it_expires_then_passes_to_it():
    campaign = CampaignFactory()

    assert lease_take(campaign_id=campaign.pk, holder="a")
    assert not lease_take(campaign_id=campaign.pk, holder="b")
    assert lease_renew(campaign_id=campaign.pk, holder="a")

    CycleLease.objects.filter(pk=campaign.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert lease_take(campaign_id=campaign.pk, holder="b")
    # The first holder, back from a pause, has lost it: it can neither renew nor free it.
    assert not lease_renew(campaign_id=campaign.pk, holder="a")
    lease_release(campaign_id=campaign.pk, holder="a")
    assert CycleLease.objects.get(pk=campaign.pk).holder == "b"

    lease_release(campaign_id=campaign.pk, holder="b")
    assert lease_take(campaign_id=campaign.pk, holder="c")


def test_the_lease_expires_after_the_configured_time_on_the_database_clock(settings):
    campaign = CampaignFactory()
    settings.CAM_CYCLE_LEASE_SECONDS = 120
    before = timezone.now()

    lease_take(campaign_id=campaign.pk, holder="a")

    lease = CycleLease.objects.get(pk=campaign.pk)
    assert timedelta(seconds=110) < lease.expires_at - before < timedelta(seconds=130)
    assert abs(lease.taken_at - before) < timedelta(seconds=10)


def test_leases_are_per_campaign():
    one, two = CampaignFactory(), CampaignFactory()
    assert lease_take(campaign_id=one.pk, holder="a")
    assert lease_take(campaign_id=two.pk, holder="b")


def test_a_cycle_is_recorded_with_its_trigger_result_and_times(smtp_server, now, django_user_model):
    campaign = CampaignFactory(live=False)
    MessageStepFactory(campaign=campaign, position=1)
    LeadFactory.create_batch(2, campaign=campaign, next_action_at=now)
    user = django_user_model.objects.create_user("ops")

    result = cycle_start(campaign=campaign, trigger="api", dry_run=None, user=user)

    run = CycleRun.objects.get()
    assert result.run_id == run.pk and result.dry_run is True  # not live: a dry run
    assert (run.trigger, run.dry_run, run.requested_by, run.sent, run.error_count) == ("api", True, user, 2, 0)
    assert run.finished_at >= run.started_at
    assert run.result["outreach_sent"] == 2
    assert all("body" not in p and p["subject"] for p in run.result["previews"])
    assert CycleLease.objects.get(pk=campaign.pk).holder == ""  # released
    assert smtp_server.messages == []


def test_a_scheduled_cycle_sends_for_real_only_for_a_live_campaign(smtp_server, now):
    live, dry = CampaignFactory(live=True), CampaignFactory(live=False)
    for campaign in (live, dry):
        MessageStepFactory(campaign=campaign, position=1)
        LeadFactory(campaign=campaign, next_action_at=now)

    assert cycle_start(campaign=live, trigger="schedule", dry_run=None).dry_run is False
    assert cycle_start(campaign=dry, trigger="schedule", dry_run=None).dry_run is True

    assert smtp_server.recipients() == [live.leads.get().email]


def test_a_second_caller_returns_at_once_with_already_running_and_records_nothing(smtp_server, now):
    campaign = CampaignFactory()
    LeadFactory(campaign=campaign, next_action_at=now)
    lease_take(campaign_id=campaign.pk, holder="elsewhere:1:abc")

    result = cycle_start(campaign=campaign, trigger="command", dry_run=False)

    assert result.already_running and result.run_id is None
    assert "already running" in result.notes[0] and "elsewhere:1:abc" in result.notes[0]
    assert not CycleRun.objects.exists() and smtp_server.messages == []
    assert CycleLease.objects.get(pk=campaign.pk).holder == "elsewhere:1:abc"  # not freed by the refused caller


def test_a_cycle_whose_lease_was_taken_over_stops_before_its_next_phase(monkeypatch, smtp_server, now):
    campaign = CampaignFactory()
    MessageStepFactory(campaign=campaign, position=1)
    LeadFactory(campaign=campaign, next_action_at=now)
    real_renew = runs.lease_renew
    calls = []

    def renew_then_lose(**kwargs):
        calls.append(1)
        if len(calls) == 2:  # before enrichment another machine took the expired lease over
            CycleLease.objects.filter(pk=campaign.pk).update(holder="other:2:def")
        return real_renew(**kwargs)

    monkeypatch.setattr(runs, "lease_renew", renew_then_lose)
    result = cycle_start(campaign=campaign, trigger="schedule", dry_run=False)

    assert result.stopped_phases == ["enrich"] and "lease expired" in result.errors[0]
    assert smtp_server.messages == []  # outreach never started
    assert CycleLease.objects.get(pk=campaign.pk).holder == "other:2:def"
    assert CycleRun.objects.get().error_count == 1


def test_a_run_that_never_finished_reads_as_running_then_interrupted(now):
    campaign = CampaignFactory()
    lease_take(campaign_id=campaign.pk, holder="h:1:x")
    run = CycleRun.objects.create(campaign=campaign, trigger="schedule", dry_run=True, holder="h:1:x",
                                  started_at=timezone.now())
    lease = CycleLease.objects.get(pk=campaign.pk)
    assert runs.run_state(run, lease, timezone.now()) == "running"
    assert runs.run_state(run, lease, lease.expires_at + timedelta(seconds=1)) == "interrupted"


def test_run_cam_cycle_follow_live_sends_only_for_live_campaigns(smtp_server, now):
    from io import StringIO

    from django.core.management import call_command

    live, dry = CampaignFactory(name="Live one", live=True), CampaignFactory(name="Dry one")
    for campaign in (live, dry):
        MessageStepFactory(campaign=campaign, position=1)
        LeadFactory(campaign=campaign, next_action_at=now)
    out = StringIO()

    call_command("run_cam_cycle", "--all", "--follow-live", stdout=out)

    assert smtp_server.recipients() == [live.leads.get().email]
    assert "LIVE campaigns: 1 email sent; the others ran dry" in out.getvalue()
    assert dict(CycleRun.objects.values_list("campaign__name", "dry_run")) == {"Live one": False, "Dry one": True}


def test_each_cycle_of_run_cam_cycle_all_dates_its_sends_at_its_own_start(smtp_server):
    """One after another, each campaign's cycle has its own `now`: a send dated at the start of
    the whole command would count on the wrong day's quota past midnight, and look abandoned to
    staff (outreach.attention.in_flight_window) while it is still in progress."""
    from django.core.management import call_command

    from outreach.models import OutreachAttempt

    first, second = CampaignFactory(), CampaignFactory()
    for campaign in (first, second):
        MessageStepFactory(campaign=campaign, position=1)
        LeadFactory(campaign=campaign, next_action_at=timezone.now() - timedelta(minutes=1))

    call_command("run_cam_cycle", "--all", "--no-dry-run", "--json", stdout=io.StringIO())

    first_run, second_run = CycleRun.objects.get(campaign=first), CycleRun.objects.get(campaign=second)
    assert second_run.started_at >= first_run.finished_at  # one after another
    for campaign, run in ((first, first_run), (second, second_run)):
        attempt = OutreachAttempt.objects.get(campaign=campaign)
        assert attempt.status == OutreachAttempt.Status.SENT
        assert attempt.created_at >= run.started_at, campaign.name
    assert OutreachAttempt.objects.get(campaign=second).created_at >= first_run.finished_at


def test_switching_a_campaign_off_live_stops_its_scheduled_cycle_before_the_next_send(monkeypatch, smtp_server, now):
    campaign = CampaignFactory(live=True, postal_address="1 Main St", max_emails_per_day=50)
    MessageStepFactory(campaign=campaign, position=1)
    LeadFactory.create_batch(5, campaign=campaign, next_action_at=now)
    real_renew = runs.lease_renew

    def operator_switches_off_after_the_first_mail(**kwargs):  # asked before each send
        if smtp_server.messages:
            Campaign.objects.filter(pk=campaign.pk).update(live=False)
        return real_renew(**kwargs)

    monkeypatch.setattr(runs, "lease_renew", operator_switches_off_after_the_first_mail)
    result = cycle_start(campaign=campaign, trigger="schedule", dry_run=None)

    assert result.dry_run is False and result.outreach_sent == 1 and len(smtp_server.messages) == 1
    assert any("switched off live" in note for note in result.notes) and result.errors == []


def test_a_command_run_with_no_dry_run_is_not_stopped_by_the_live_switch(smtp_server, now):
    campaign = CampaignFactory(live=False, max_emails_per_day=50)
    MessageStepFactory(campaign=campaign, position=1)
    LeadFactory.create_batch(3, campaign=campaign, next_action_at=now)
    assert cycle_start(campaign=campaign, trigger="command", dry_run=False).outreach_sent == 3
