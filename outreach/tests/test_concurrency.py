"""The daily quota and "never the same step twice" hold when several cycles run at once.

These tests commit for real (transaction=True) so that other processes and threads see the
data, and count what actually reached a real SMTP server.
"""

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone

from campaigns.cycle import cycle_run
from campaigns.models import Campaign
from campaigns.tests.factories import CampaignFactory
from leads.tests.factories import LeadFactory
from outreach.models import OutreachAttempt
from outreach.sending import QUOTA_FULL, attempt_claim

pytestmark = pytest.mark.django_db(transaction=True)

QUOTA = 5
DUE_LEADS = 40
WORKERS = 4


def _campaign_with_due_leads(now):
    # Scores at or under the threshold: nobody is QUALIFIED, so the goal never cuts outreach short.
    campaign = CampaignFactory(max_emails_per_day=QUOTA, target_clients=100)
    for i in range(DUE_LEADS):
        LeadFactory(campaign=campaign, score=0.3 + (i % 5) / 10, next_action_at=now - timedelta(minutes=5))
    return campaign


def _assert_quota_and_uniqueness(smtp_server, campaign):
    recipients = smtp_server.recipients()
    assert len(recipients) == QUOTA, recipients
    assert len(set(recipients)) == QUOTA, "a lead was mailed twice"
    attempts = OutreachAttempt.objects.filter(campaign=campaign)
    assert attempts.filter(status=OutreachAttempt.Status.SENT).count() == QUOTA
    assert attempts.exclude(status=OutreachAttempt.Status.SENT).count() == 0
    per_lead = Counter(attempts.values_list("lead_id", flat=True))
    assert max(per_lead.values()) == 1
    assert sorted(smtp_server.recipients()) == sorted(attempts.values_list("lead__email", flat=True))


def test_concurrent_run_cam_cycle_processes_send_exactly_the_quota(smtp_server, database_url):
    campaign = _campaign_with_due_leads(timezone.now())
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_server.port),
        "MAKE_WEBHOOK_URL": "",
        "CAM_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "manage.py", "run_cam_cycle", "--all", "--no-dry-run", "--json"]
    workers = [
        subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(WORKERS)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]

    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
    results = [json.loads(out)[0] for out, _ in outputs]
    assert sum(r["outreach_sent"] for r in results) == QUOTA
    assert all(r["errors"] == [] for r in results), results
    _assert_quota_and_uniqueness(smtp_server, campaign)


def test_concurrent_cycles_in_threads_started_together_send_exactly_the_quota(smtp_server):
    now = timezone.now()
    campaign = _campaign_with_due_leads(now)
    start = threading.Barrier(WORKERS)
    results, failures = [], []

    def worker():
        try:
            start.wait()
            results.append(cycle_run(campaign=Campaign.objects.get(pk=campaign.pk), now=now, dry_run=False))
        except Exception as exc:  # collected and asserted below, never hidden
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    assert sum(r.outreach_sent for r in results) == QUOTA
    assert all(r.errors == [] for r in results), [r.errors for r in results]
    _assert_quota_and_uniqueness(smtp_server, campaign)


def test_claims_racing_for_the_last_slots_never_exceed_the_quota():
    """20 workers claim 20 different leads at the same instant: exactly the quota get through."""
    now = timezone.now()
    campaign = CampaignFactory(max_emails_per_day=QUOTA)
    leads = [LeadFactory(campaign=campaign, next_action_at=now - timedelta(minutes=1)) for _ in range(20)]
    start = threading.Barrier(len(leads))
    outcomes, failures = [], []

    def worker(lead):
        try:
            start.wait()
            outcomes.append(attempt_claim(campaign=campaign, lead=lead, step=1, subject="", message_id="", now=now))
        except Exception as exc:  # collected and asserted below, never hidden
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(lead,)) for lead in leads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    claimed = [o for o in outcomes if isinstance(o, OutreachAttempt)]
    assert len(claimed) == QUOTA
    assert outcomes.count(QUOTA_FULL) == len(leads) - QUOTA
    assert OutreachAttempt.objects.filter(campaign=campaign).count() == QUOTA
