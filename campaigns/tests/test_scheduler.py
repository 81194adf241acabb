"""The scheduler across real processes (SPEC §7): `qcluster` clusters and `run_cam_cycle` commands
run as OS processes against the test database and a real SMTP server (aiosmtpd), some of them
killed mid-send. What is asserted is what reached the server and what the database says.

django-q2's sentinel runs its scheduler about every 30 s whatever the guard cycle, so a test
fires the schedule by moving its next_run into the past and waits for a tick. A cluster is
stopped with SIGTERM to its main process only (django-q2 deadlocks in its stop when all its
processes get SIGTERM at once); its process group is killed afterwards as the last resort.
"""

import asyncio
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db.models.functions import Now
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule, Task
from django_q.status import Stat

from cam_project.schedules import PREFIX
from cam_project.testing import superuser, token_client
from campaigns.models import CycleLease, CycleRun
from campaigns.runs import run_state
from campaigns.tasks import campaign_cycles_fan_out
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.models import Lead
from outreach.attention import attempts_needing_attention
from outreach.models import OutreachAttempt

pytestmark = pytest.mark.django_db(transaction=True)
Sent = OutreachAttempt.Status
CYCLES_SCHEDULE = PREFIX + "campaign cycles"


# --- helpers: child processes, waiting, a relay that stalls -------------------------------------


def child_env(database_url: str, smtp_server, **overrides) -> dict:
    """The environment of a child process: the test database, the aiosmtpd server, no webhook,
    no paid enrichment, a fast-polling cluster; `overrides` (CAM_… settings) on top."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_server.port),
        "EMAIL_HOST_USER": "",
        "EMAIL_HOST_PASSWORD": "",
        "EMAIL_USE_TLS": "false",
        "MAKE_WEBHOOK_URL": "",
        "APOLLO_API_KEY": "",
        "DROPCONTACT_API_KEY": "",
        "CAM_VERIFY_EMAIL_DNS": "false",
        "TIME_ZONE": "UTC",
        "CAM_LOG_LEVEL": "WARNING",
        "CAM_Q_GUARD_CYCLE": "0.5",
        "CAM_Q_POLL": "0.1",
    }
    env.update({name: str(value) for name, value in overrides.items()})
    return env


def manage(env: dict, *args: str, **popen) -> subprocess.Popen:
    """`python manage.py ARGS` as a child process."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=django_settings.BASE_DIR, env=env,
                            text=True, **popen)


def run_cam_cycle(env: dict, campaign, *extra: str, **popen) -> subprocess.Popen:
    return manage(env, "run_cam_cycle", "--campaign-id", str(campaign.pk), "--no-dry-run", *extra, **popen)


def wait_until(condition, *, timeout: float, what: str, interval: float = 0.1):
    """Poll `condition` until it returns something truthy (returned), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class QCluster:
    """A `python manage.py qcluster` process in its own session (so its process group can be
    killed as a last resort), logging to a file shown when a test fails."""

    def __init__(self, env: dict, log_path):
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = manage(env, "qcluster", stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.process.pid

    def stat(self) -> Stat | None:
        """The cluster's heartbeat (django-q2 saves it to the shared cache each guard cycle)."""
        return next((s for s in Stat.get_all() if s.pid == self.pid), None)

    def running(self, workers: int) -> Stat:
        return wait_until(lambda: (s := self.stat()) and s.status != Conf.STARTING and len(s.workers) == workers and s,
                          timeout=30, what=f"cluster {self.pid} to run {workers} workers\n{self.log()}")

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM to the main process only, then wait for it; None if it did not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_group(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:  # every process of the cluster has exited: the normal case
            pass
        self.process.wait(timeout=10)
        self._log.close()

    def log(self, tail: int = 4000) -> str:
        self._log.flush()
        return f"--- qcluster {self.pid} log (tail) ---\n{self.log_path.read_text()[-tail:]}"


@pytest.fixture
def qcluster(transactional_db, tmp_path):
    """Start clusters with `qcluster(env)`; every one is stopped (and its group killed) before the
    test database is flushed."""
    started = []

    def start(env: dict) -> QCluster:
        cluster = QCluster(env, tmp_path / f"qcluster-{len(started) + 1}.log")
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()
    for cluster in started:
        cluster.kill_group()


class StallingRelay:
    """Makes the aiosmtpd server take the first message it is given (it is recorded, as handed
    over) and hold its reply until `release` is set, like a relay that stalls after DATA; every
    later message is answered at once."""

    def __init__(self, smtp_server, hold_seconds: float = 60):
        self.taken = threading.Event()
        self.release = threading.Event()
        self.first_recipients: list[str] = []
        self._hold_seconds = hold_seconds
        self._record = smtp_server.handle_DATA
        self._count = 0
        smtp_server.handle_DATA = self._handle_DATA

    async def _handle_DATA(self, server, session, envelope):
        reply = await self._record(server, session, envelope)
        self._count += 1
        if self._count == 1:
            self.first_recipients = list(envelope.rcpt_tos)
            self.taken.set()
            deadline = time.monotonic() + self._hold_seconds
            while not self.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        return reply


def live_campaign_with_imported_leads(tmp_path, *, leads: int, quota: int, prefix: str, live: bool = True):
    """A campaign with one step and `leads` NEW leads from a CSV file through `import_leads`
    (the cycles enrich them). Nobody scores above the threshold, so the goal never cuts in."""
    campaign = CampaignFactory(live=live, postal_address="1 Main Street, Springfield", max_emails_per_day=quota,
                               target_clients=1000, qualification_threshold=1.0)
    MessageStepFactory(campaign=campaign, position=1, delay_days=0)
    lines = ["email,first_name,last_name,company,job_title,company_size,industry"]
    for i in range(leads):
        lines.append(f"{prefix}-{i}@{prefix}-co{i}.example,Ann{i},Lee,Co{i},{'CTO' if i % 2 else ''},"
                     f"{'42' if i % 3 else ''},SaaS")
    path = tmp_path / f"{prefix}.csv"
    path.write_text("\n".join(lines) + "\n")
    call_command("import_leads", "--campaign-id", str(campaign.pk), str(path), stdout=io.StringIO())
    assert Lead.objects.filter(campaign=campaign, status=Lead.Status.NEW, next_action_at__isnull=False).count() == leads
    return campaign


def lead_emails(campaign) -> set[str]:
    return set(Lead.objects.filter(campaign=campaign).values_list("email", flat=True))


def holder_pid(holder: str) -> int:
    """The pid in a lease holder "host:pid:id"."""
    return int(holder.rsplit(":", 2)[1])


def wait_for_lease_expiry(campaign) -> None:
    """Until the campaign's lease has expired on the database's clock (what lease_take reads)."""
    wait_until(lambda: CycleLease.objects.filter(pk=campaign.pk, expires_at__lt=Now()).exists(),
               timeout=30, what="the killed cycle's lease to expire")


# --- (a) scheduled rounds on two clusters --------------------------------------------------------

CAMPAIGNS = 20
ROUNDS = 3
# The second cluster starts this long after the first, so their scheduler ticks (each every
# ~30 s from its start) interleave and a round can fire every ~15 s instead of every 30 s.
STAGGER_SECONDS = 15


def test_scheduled_rounds_on_two_clusters_send_each_live_campaigns_quota_exactly_once(
    smtp_server, database_url, tmp_path, qcluster
):
    started = time.monotonic()
    campaigns = [
        live_campaign_with_imported_leads(tmp_path, leads=6, quota=2 + i % 2, prefix=f"a{i}")
        for i in range(CAMPAIGNS)
    ]
    call_command("sync_schedules", stdout=io.StringIO())
    assert Schedule.objects.filter(name=CYCLES_SCHEDULE, func="campaigns.tasks.campaign_cycles_fan_out").exists()
    env = child_env(database_url, smtp_server)
    clusters = [qcluster(env)]
    first_started = time.monotonic()
    wait_until(lambda: time.monotonic() - first_started >= STAGGER_SECONDS, timeout=STAGGER_SECONDS + 1,
               what="the stagger between the clusters")
    clusters.append(qcluster(env))
    workers = {c.pid: set(c.running(workers=2).workers) for c in clusters}
    logs = lambda: "\n".join(c.log() for c in clusters)

    for round_number in range(1, ROUNDS + 1):
        # Due now: the next tick of either cluster's scheduler fires it (sync_schedules made the
        # first round due already).
        Schedule.objects.filter(name=CYCLES_SCHEDULE).update(next_run=timezone.now() - timedelta(minutes=1))
        wait_until(lambda: Schedule.objects.filter(name=CYCLES_SCHEDULE,
                                                   next_run__gt=timezone.now() + timedelta(minutes=1)).exists(),
                   timeout=45, what=f"round {round_number}'s schedule to fire\n{logs()}")
        wait_until(lambda: CycleRun.objects.filter(finished_at__isnull=False).count() >= round_number * CAMPAIGNS
                   and not OrmQ.objects.exists(),
                   timeout=90, what=f"round {round_number}'s {CAMPAIGNS} cycles to finish\n{logs()}")
    rounds_done = time.monotonic()
    for cluster in clusters:
        assert cluster.stop() is not None, f"a cluster did not stop on SIGTERM\n{cluster.log()}"
    wall = time.monotonic() - started

    runs = list(CycleRun.objects.order_by("started_at"))
    # One cycle per campaign per round: no task lost, none delivered twice.
    assert len(runs) == ROUNDS * CAMPAIGNS
    assert Task.objects.filter(func="campaigns.tasks.campaign_cycles_fan_out", success=True).count() == ROUNDS
    assert Task.objects.filter(func="campaigns.tasks.campaign_cycle", success=True).count() == ROUNDS * CAMPAIGNS
    assert not Task.objects.filter(success=False).exists()
    assert {(r.trigger, r.dry_run) for r in runs} == {(CycleRun.Trigger.SCHEDULE, False)}
    assert all(r.finished_at is not None and r.error_count == 0 and r.unknown == 0 for r in runs), \
        [r.result["errors"] for r in runs if r.error_count]
    assert Counter(r.campaign_id for r in runs) == {c.pk: ROUNDS for c in campaigns}
    # Both clusters ran cycles (each cycle's lease holder names its worker's pid).
    per_cluster = {pid: sum(holder_pid(r.holder) in pids for r in runs) for pid, pids in workers.items()}
    assert all(per_cluster.values()) and sum(per_cluster.values()) == len(runs), per_cluster

    # Every lead was enriched by the cycles; each campaign sent exactly its quota, once each.
    assert not Lead.objects.filter(status=Lead.Status.NEW).exists()
    recipients = Counter(smtp_server.recipients())
    assert {email: n for email, n in recipients.items() if n > 1} == {}, "a lead got its step twice"
    assert len({m["Message-ID"] for m in smtp_server.messages}) == len(smtp_server.messages)
    for campaign in campaigns:
        mailed = set(recipients) & lead_emails(campaign)
        sent = OutreachAttempt.objects.filter(campaign=campaign, status=Sent.SENT)
        assert len(mailed) == sent.count() == campaign.max_emails_per_day, campaign.pk
        assert set(sent.values_list("lead__email", flat=True)) == mailed
        assert sum(r.sent for r in runs if r.campaign_id == campaign.pk) == campaign.max_emails_per_day
    assert len(smtp_server.messages) == sum(c.max_emails_per_day for c in campaigns)
    assert not OutreachAttempt.objects.filter(status__in=OutreachAttempt.ATTENTION_STATUSES).exists()

    durations = [(r.finished_at - r.started_at).total_seconds() for r in runs]
    print(f"\n(a) rounds {ROUNDS}, runs recorded {len(runs)} (per cluster {list(per_cluster.values())}), "
          f"mails {len(smtp_server.messages)} = quota {sum(c.max_emails_per_day for c in campaigns)}, "
          f"wall {wall:.1f} s (rounds done at {rounds_done - started:.1f} s), "
          f"median cycle {statistics.median(durations):.3f} s "
          f"(round 1 {statistics.median(durations[:CAMPAIGNS]):.3f} s, max {max(durations):.3f} s)")


# --- (b) run_cam_cycle killed mid-send ----------------------------------------------------------


def test_a_cycle_killed_mid_send_keeps_its_lease_until_it_expires_then_the_next_sends_nothing_twice(
    smtp_server, database_url, tmp_path
):
    campaign = live_campaign_with_imported_leads(tmp_path, leads=4, quota=10, prefix="b", live=False)
    relay = StallingRelay(smtp_server)
    env = child_env(database_url, smtp_server, CAM_CYCLE_LEASE_SECONDS=3)
    killed = run_cam_cycle(env, campaign, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert relay.taken.wait(timeout=60), "the cycle never handed a message over"
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
    relay.release.set()
    interrupted = relay.first_recipients
    run = CycleRun.objects.get(campaign=campaign)
    assert run_state(run, CycleLease.objects.get(pk=campaign.pk), timezone.now()) == "running"

    # Immediately after: its lease still holds, the next cycle does nothing.
    began = time.monotonic()
    second = run_cam_cycle(env, campaign, "--json")
    out, err = second.communicate(timeout=60)
    second_took = time.monotonic() - began
    assert second.returncode == 0, err
    refused = json.loads(out)
    assert refused["already_running"] is True and refused["outreach_sent"] == 0, (
        f"not refused {second_took:.1f} s after the kill (the lease lasts 3 s)", refused)
    assert any("already running" in note for note in refused["notes"]), refused["notes"]
    assert CycleRun.objects.filter(campaign=campaign).count() == 1
    assert smtp_server.recipients() == interrupted

    # After its real expiry, a cycle takes the lease over and mails the others, once.
    wait_for_lease_expiry(campaign)
    third = run_cam_cycle(env, campaign, "--json")
    out, err = third.communicate(timeout=60)
    assert third.returncode == 0, err
    result = json.loads(out)
    assert (result["already_running"], result["outreach_sent"], result["errors"]) == (False, 3, []), result
    recipients = Counter(smtp_server.recipients())
    assert recipients == {email: 1 for email in lead_emails(campaign)}
    attempt = OutreachAttempt.objects.get(campaign=campaign, lead__email__in=interrupted)
    assert attempt.status == Sent.CLAIMED
    assert OutreachAttempt.objects.filter(campaign=campaign, status=Sent.SENT).count() == 3

    # Staff see the interrupted send; the killed run's record says it was interrupted.
    listed = token_client(superuser()).get(f"/api/cam/campaigns/{campaign.pk}/attempts?status=claimed,unknown")
    assert listed.status_code == 200, listed.content
    assert [row["id"] for row in listed.json()["results"]] == [attempt.pk]
    run.refresh_from_db()
    assert run.finished_at is None
    assert run_state(run, CycleLease.objects.get(pk=campaign.pk), timezone.now()) == "interrupted"
    taken_over = CycleRun.objects.exclude(pk=run.pk).get(campaign=campaign)
    assert taken_over.finished_at is not None and taken_over.sent == 3 and taken_over.holder != run.holder
    print(f"\n(b) refused {second_took:.2f} s after the kill; taken over "
          f"{(taken_over.started_at - run.started_at).total_seconds():.1f} s after the killed cycle started")


# --- (c) two run_cam_cycle processes at once ----------------------------------------------------


def test_a_second_run_cam_cycle_while_one_runs_exits_at_once_saying_already_running(
    smtp_server, database_url, tmp_path
):
    campaign = live_campaign_with_imported_leads(tmp_path, leads=4, quota=10, prefix="c", live=False)
    relay = StallingRelay(smtp_server)
    env = child_env(database_url, smtp_server)
    first = run_cam_cycle(env, campaign, "--json")
    try:
        # The first holds the lease: it is stalled in its first send.
        assert relay.taken.wait(timeout=60), "the first cycle never handed a message over"
        began = time.monotonic()
        second = run_cam_cycle(env, campaign)
        out, err = second.communicate(timeout=60)
        second_took = time.monotonic() - began
        assert first.poll() is None, "the first cycle ended before the second was refused"
    finally:
        relay.release.set()
    first_out, first_err = first.communicate(timeout=60)

    assert second.returncode == 0, err
    assert "already running" in out, out
    assert second_took < 15, f"the second cycle waited {second_took:.1f} s"
    assert first.returncode == 0, first_err
    result = json.loads(first_out)
    assert (result["already_running"], result["outreach_sent"], result["errors"]) == (False, 4, []), result
    assert Counter(smtp_server.recipients()) == {email: 1 for email in lead_emails(campaign)}
    assert OutreachAttempt.objects.filter(campaign=campaign, status=Sent.SENT).count() == 4
    assert CycleRun.objects.filter(campaign=campaign).count() == 1
    assert CycleLease.objects.get(pk=campaign.pk).holder == ""  # released
    print(f"\n(c) the second run_cam_cycle was refused in {second_took:.2f} s")


# --- (d) a qcluster worker killed mid-send -------------------------------------------------------


def test_a_cycle_task_whose_worker_is_killed_mid_send_is_redelivered_and_sends_nothing_twice(
    smtp_server, database_url, tmp_path, qcluster
):
    campaign = live_campaign_with_imported_leads(tmp_path, leads=4, quota=10, prefix="d")
    relay = StallingRelay(smtp_server)
    # timeout < retry (django-q2's rule); the lease expires long before the redelivery.
    cluster = qcluster(child_env(database_url, smtp_server, CAM_WORKERS=2, CAM_TASK_TIMEOUT_SECONDS=8,
                                 CAM_TASK_RETRY_SECONDS=10, CAM_CYCLE_LEASE_SECONDS=4, CAM_Q_GUARD_CYCLE=0.2))
    cluster.running(workers=2)
    assert campaign_cycles_fan_out() == 1

    try:
        assert relay.taken.wait(timeout=60), f"the task's cycle never handed a message over\n{cluster.log()}"
        first = CycleRun.objects.get(campaign=campaign)
        worker = holder_pid(first.holder)
        assert worker in cluster.stat().workers
        assert CycleLease.objects.get(pk=campaign.pk).holder == first.holder
        os.kill(worker, signal.SIGKILL)
        killed_at = timezone.now()
    finally:
        relay.release.set()
    interrupted = relay.first_recipients

    second = wait_until(
        lambda: CycleRun.objects.filter(campaign=campaign, finished_at__isnull=False).exclude(pk=first.pk).first(),
        timeout=60, what=f"the task to be redelivered and its cycle to finish\n{cluster.log()}")
    wait_until(lambda: not OrmQ.objects.exists() and Task.objects.exists(), timeout=30,
               what=f"the redelivered task to be acknowledged\n{cluster.log()}")
    stat = wait_until(lambda: (s := cluster.stat()) and s.reincarnations >= 1 and len(s.workers) == 2 and s,
                      timeout=30, what=f"the cluster to replace its worker\n{cluster.log()}")
    assert cluster.stop() is not None, f"the cluster did not stop on SIGTERM\n{cluster.log()}"

    assert worker not in stat.workers
    assert holder_pid(second.holder) in stat.workers
    assert (second.trigger, second.dry_run, second.sent, second.unknown, second.error_count) == (
        CycleRun.Trigger.SCHEDULE, False, 3, 0, 0), second.result
    task = Task.objects.get()
    assert (task.func, task.success, task.result["run_id"]) == ("campaigns.tasks.campaign_cycle", True, second.pk)
    assert CycleRun.objects.filter(campaign=campaign).count() == 2
    first.refresh_from_db()
    assert first.finished_at is None
    assert run_state(first, CycleLease.objects.get(pk=campaign.pk), timezone.now()) == "interrupted"

    # Nothing twice: the interrupted lead's message once (the stalled one), every other lead once.
    assert Counter(smtp_server.recipients()) == {email: 1 for email in lead_emails(campaign)}
    attempt = OutreachAttempt.objects.get(campaign=campaign, lead__email__in=interrupted)
    assert attempt.status == Sent.CLAIMED
    assert list(attempts_needing_attention(campaign=campaign)) == [attempt]
    assert OutreachAttempt.objects.filter(campaign=campaign, status=Sent.SENT).count() == 3

    print(f"\n(d) worker {worker} killed; task redelivered and its cycle started "
          f"{(second.started_at - killed_at).total_seconds():.1f} s after the kill "
          f"({(second.started_at - first.started_at).total_seconds():.1f} s after the first delivery), "
          f"cluster reincarnations {stat.reincarnations}, mails {len(smtp_server.messages)} for "
          f"{len(lead_emails(campaign))} leads, duplicates 0")
