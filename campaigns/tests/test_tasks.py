"""The scheduled tasks and the schedules (SPEC §7), run in-process; tests/test_scheduler.py runs
them in real qcluster workers."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from campaigns import tasks
from campaigns.models import CycleLease, CycleRun
from campaigns.runs import lease_take
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db


def sync(*args) -> str:
    out = StringIO()
    call_command("sync_schedules", *args, stdout=out)
    return out.getvalue()


def test_sync_schedules_creates_them_once_and_is_idempotent(settings):
    settings.CAM_CYCLE_MINUTES = 15
    assert "5 change(s)" in sync()
    first = {s.name: (s.func, s.minutes, s.next_run) for s in Schedule.objects.all()}
    assert first["cam: campaign cycles"][:2] == ("campaigns.tasks.campaign_cycles_fan_out", 15)
    assert first["cam: prune run history"][:2] == ("campaigns.tasks.runs_prune", 1440)
    assert first["cam: prune imports"][:2] == ("leads.tasks.import_jobs_old_prune", 1440)
    assert first["cam: send due mail"][:2] == ("campaigns.tasks.campaign_sends_fan_out", 1)
    assert first["cam: read inboxes"][:2] == ("outreach.tasks.inboxes_fan_out", 5)

    assert "0 change(s)" in sync()
    assert {s.name: (s.func, s.minutes, s.next_run) for s in Schedule.objects.all()} == first


def test_sync_schedules_updates_a_changed_interval_and_removes_what_is_no_longer_declared(settings):
    sync()
    Schedule.objects.create(name="cam: retired job", func="campaigns.tasks.gone", schedule_type=Schedule.MINUTES,
                            minutes=5)
    Schedule.objects.create(name="staff backup", func="somewhere.backup", schedule_type=Schedule.DAILY)
    settings.CAM_CYCLE_MINUTES = 5

    assert "would be updated  cam: campaign cycles: minutes" in sync("--dry-run")
    assert Schedule.objects.get(name="cam: campaign cycles").minutes == 15
    out = sync()

    assert "deleted  cam: retired job" in out
    assert Schedule.objects.get(name="cam: campaign cycles").minutes == 5
    assert set(Schedule.objects.values_list("name", flat=True)) == {
        "cam: campaign cycles", "cam: send due mail", "cam: read inboxes", "cam: prune run history",
        "cam: prune imports", "staff backup"}  # staff's own is left alone


def test_the_fan_out_queues_one_task_per_active_campaign_not_already_running():
    active = CampaignFactory.create_batch(3)
    CampaignFactory(active=False)
    running = CampaignFactory()
    lease_take(campaign_id=running.pk, holder="busy:1:x")
    expired = CampaignFactory()
    lease_take(campaign_id=expired.pk, holder="crashed:2:y")
    CycleLease.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    active.append(expired)

    assert tasks.campaign_cycles_fan_out() == 4

    queued = [task.task for task in OrmQ.objects.all()]
    assert sorted(t["args"][0] for t in queued) == sorted(c.pk for c in active)
    assert {t["func"] for t in queued} == {"campaigns.tasks.campaign_cycle"}


def test_a_scheduled_cycle_follows_the_live_switch_and_skips_a_paused_campaign(smtp_server, now):
    live = CampaignFactory(live=True, postal_address="1 Main St")
    MessageStepFactory(campaign=live, position=1)
    LeadFactory(campaign=live, next_action_at=now)
    paused = CampaignFactory(active=False)

    summary = tasks.campaign_cycle(live.pk)

    assert (summary["dry_run"], summary["sent"], summary["already_running"]) == (False, 1, False)
    assert CycleRun.objects.get().trigger == "schedule"
    assert "nothing done" in tasks.campaign_cycle(paused.pk)["note"]
    assert "nothing done" in tasks.campaign_cycle(999999)["note"]


def test_a_redelivered_task_finds_the_lease_held_and_does_nothing(smtp_server, now):
    campaign = CampaignFactory(live=True)
    LeadFactory(campaign=campaign, next_action_at=now)
    lease_take(campaign_id=campaign.pk, holder="first-delivery:1:x")

    assert tasks.campaign_cycle(campaign.pk)["already_running"] is True
    assert smtp_server.messages == [] and not CycleRun.objects.exists()


def test_pruning_keeps_recent_and_unfinished_runs(settings):
    settings.CAM_RUN_HISTORY_DAYS = 90
    campaign = CampaignFactory()
    old = timezone.now() - timedelta(days=91)
    for started, finished in ((old, old), (old, None), (timezone.now(), timezone.now())):
        CycleRun.objects.create(campaign=campaign, trigger="schedule", dry_run=True, holder="h",
                                started_at=started, finished_at=finished)

    assert tasks.runs_prune() == 1
    assert CycleRun.objects.count() == 2 and not CycleRun.objects.filter(started_at=old, finished_at=old).exists()


def test_duplicate_schedules_left_by_a_race_are_removed():
    sync()
    Schedule.objects.create(name="cam: campaign cycles", func="campaigns.tasks.campaign_cycles_fan_out",
                            schedule_type=Schedule.MINUTES, minutes=15)
    assert "(duplicate #" in sync()
    assert Schedule.objects.filter(name="cam: campaign cycles").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_sync_waits_for_another_one_in_progress_so_two_deploys_never_both_create(database_url):
    """Rows that do not exist yet cannot be locked: a second sync must wait for the first's lock
    (an advisory lock on PostgreSQL, the write lock on SQLite), then find the schedules made."""
    import os
    import subprocess
    import sys
    import time

    from django.conf import settings as django_settings
    from django.db import transaction

    from campaigns.management.commands.sync_schedules import _lock_out_other_syncs

    env = {**os.environ, "DATABASE_URL": database_url}
    with transaction.atomic():
        _lock_out_other_syncs()  # what a first sync holds while it creates the schedules
        second = subprocess.Popen([sys.executable, "manage.py", "sync_schedules"], cwd=django_settings.BASE_DIR,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        assert second.poll() is None, "the second sync did not wait"
        sync()  # the first one creates them, then commits
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "0 change(s)" in out
    assert Schedule.objects.count() == 5
