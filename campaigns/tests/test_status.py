"""`cam_status` (SPEC §7): what an operator reads about the scheduler and every campaign."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Task

from campaigns.models import CycleRun
from campaigns.runs import cycle_start, lease_take
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.tests.factories import LeadFactory
from outreach.models import OutreachAttempt
from outreach.tests.factories import OutreachAttemptFactory


def cam_status(*args) -> str:
    out = StringIO()
    call_command("cam_status", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_it_reports_each_campaigns_mode_last_run_quota_lease_and_attention(smtp_server):
    calm = CampaignFactory(name="Calm", live=True, postal_address="1 Main St", max_emails_per_day=5)
    MessageStepFactory(campaign=calm, position=1)
    LeadFactory.create_batch(2, campaign=calm, next_action_at=timezone.now())
    cycle_start(campaign=calm, trigger="schedule", dry_run=None)  # live: sends 2
    busy = CampaignFactory(name="Busy")
    lease_take(campaign_id=busy.pk, holder="worker-1:77:abc")
    OutreachAttemptFactory(campaign=busy, lead=LeadFactory(campaign=busy), status=OutreachAttempt.Status.UNKNOWN)
    CycleRun.objects.create(campaign=busy, trigger="command", dry_run=False, holder="gone:1:x",
                            started_at=timezone.now() - timedelta(minutes=30))

    report = json.loads(cam_status("--json"))

    rows = {c["name"]: c for c in report["campaigns"]}
    assert rows["Calm"]["live"] is True and rows["Calm"]["quota_used"] == 2 and rows["Calm"]["quota"] == 5
    run = rows["Calm"]["last_run"]
    assert (run["trigger"], run["dry_run"], run["state"], run["sent"], run["errors"]) == ("schedule", False, "finished", 2, [])
    assert run["duration_seconds"] >= 0 and rows["Calm"]["lease"] == "free"
    assert rows["Busy"]["lease"].startswith("held by worker-1:77:abc")
    assert rows["Busy"]["needs_attention"] == 1 and rows["Busy"]["quota_used"] == 1
    assert rows["Busy"]["last_run"]["state"] == "interrupted"  # never finished, not the lease holder

    text = cam_status()
    assert "LIVE" in text and "2/5" in text and "interrupted" in text
    assert "1 send(s) need attention" in text and "lease held by worker-1:77:abc" in text


@pytest.mark.django_db
def test_without_a_cluster_or_schedules_it_says_what_to_start():
    text = cam_status()
    assert "no cluster running" in text and "qcluster" in text
    assert "run `python manage.py sync_schedules`" in text

    call_command("sync_schedules", stdout=StringIO())
    report = json.loads(cam_status("--json"))
    assert [s["name"] for s in report["scheduler"]["schedules"]] == [
        "cam: campaign cycles", "cam: prune imports", "cam: prune run history", "cam: read inboxes",
        "cam: send due mail"]
    assert report["scheduler"]["clusters"] == []


@pytest.mark.django_db
def test_failed_tasks_of_the_last_day_are_counted_with_their_error():
    now = timezone.now()
    for age, name in ((timedelta(hours=1), "recent"), (timedelta(days=2), "old")):
        Task.objects.create(id=name, name=name, func="campaigns.tasks.campaign_cycle", started=now - age,
                            stopped=now - age, success=False, result="RuntimeError: broke")

    report = json.loads(cam_status("--json"))["scheduler"]

    assert report["failed_tasks_24h"] == 1
    assert report["recent_failures"][0]["name"] == "recent" and "broke" in report["recent_failures"][0]["error"]
    assert "failed tasks (24 h): 1" in cam_status()


@pytest.mark.django_db(transaction=True)
def test_a_running_cluster_shows_with_its_heartbeat_and_goes_when_stopped(database_url):
    env = {**os.environ, "DATABASE_URL": database_url, "CAM_Q_GUARD_CYCLE": "0.2", "CAM_LOG_LEVEL": "WARNING"}
    cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=settings.BASE_DIR, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def ours():  # another test's cluster may still show for its heartbeat's last 3 s
            clusters = json.loads(cam_status("--json"))["scheduler"]["clusters"]
            return [c for c in clusters if c["pid"] == cluster.pid]

        deadline = time.monotonic() + 30
        mine = []
        while not (mine and mine[0]["workers"]) and time.monotonic() < deadline:
            time.sleep(0.3)
            mine = ours()
        assert mine, "the cluster's heartbeat never showed"
        assert mine[0]["workers"] >= 1 and mine[0]["heartbeat_ago_seconds"] < 5
        assert f"cluster {mine[0]['host']} (pid {cluster.pid})" in cam_status()
        cluster.send_signal(signal.SIGTERM)
        assert cluster.wait(timeout=30) == 0
        time.sleep(4)  # a heartbeat lives 3 s
        assert ours() == []
    finally:
        if cluster.poll() is None:
            os.killpg(cluster.pid, signal.SIGKILL)


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_redis_queue_is_reported_and_the_campaigns_still_are(database_url):
    from conftest import free_port

    CampaignFactory(name="Still listed")
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = subprocess.run([sys.executable, "manage.py", "cam_status"], cwd=settings.BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "the queue cannot be reached" in done.stdout and "Still listed" in done.stdout
    assert "Traceback" not in done.stderr
