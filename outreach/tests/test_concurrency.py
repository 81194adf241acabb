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
from outreach.claims import QUOTA_FULL, attempt_claim

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


# --- from where real data starts: leads fresh from import_leads (NEW) ---------------------------

IMPORTED = 60
ROUNDS = 3


def _write_leads_csv(path, count, prefix):
    lines = ["email,first_name,last_name,company,job_title,company_size,industry"]
    for i in range(count):
        # Varied fields give varied scores; the last lead has none: it scores lowest, goes last.
        full = i < count - 1
        lines.append(f"{prefix}{i}@lead{i % 7}.example,Ann{i},Lee,Co{i},{'CTO' if full else ''},"
                     f"{'42' if full and i % 2 else ''},{'SaaS' if full and i % 3 else ''}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cycles_racing_on_freshly_imported_leads_never_mail_anyone_twice_nor_overwrite_a_reply(
    smtp_server, database_url, tmp_path, settings
):
    """Several live cycles start together on NEW leads straight from import_leads: each
    enriches them and sends. A cycle's enrichment written back after another cycle sent must
    not make a lead ENRICHED and due again (it would get step 2 at once), and a reply recorded
    through the API while they run must stay."""
    from django.core.management import call_command

    from cam_project.testing import superuser, token_client
    from campaigns.tests.factories import MessageStepFactory
    from leads.models import Lead

    api = token_client(superuser())
    env = {
        **os.environ, "DATABASE_URL": database_url, "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_server.port),
        "MAKE_WEBHOOK_URL": "", "CAM_LOG_LEVEL": "ERROR", "CAM_MAX_ENRICHED": str(IMPORTED),
    }
    command = [sys.executable, "manage.py", "run_cam_cycle", "--all", "--no-dry-run", "--json"]
    first_mail = threading.Event()
    original_handle_data = smtp_server.handle_DATA

    async def note_first_mail(server, session, envelope):
        first_mail.set()
        return await original_handle_data(server, session, envelope)

    smtp_server.handle_DATA = note_first_mail
    for round_number in range(ROUNDS):
        Campaign.objects.filter(active=True).update(active=False)  # one campaign races per round
        campaign = CampaignFactory(max_emails_per_day=IMPORTED, target_clients=IMPORTED * 10,
                                   qualification_threshold=1.0)
        for position, delay in ((1, 0), (2, 3), (3, 4)):
            MessageStepFactory(campaign=campaign, position=position, delay_days=delay)
        csv_path = _write_leads_csv(tmp_path / f"leads{round_number}.csv", IMPORTED, f"r{round_number}-")
        call_command("import_leads", "--campaign-id", str(campaign.pk), str(csv_path), stdout=open(os.devnull, "w"))
        assert Lead.objects.filter(campaign=campaign, status=Lead.Status.NEW).count() == IMPORTED
        replier = Lead.objects.get(campaign=campaign, email=f"r{round_number}-{IMPORTED - 1}@lead{(IMPORTED - 1) % 7}.example")
        first_mail.clear()
        smtp_server.messages.clear()

        workers = [subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(WORKERS)]
        assert first_mail.wait(timeout=60), "no mail reached the server"
        reply = api.patch(f"/api/cam/leads/{replier.pk}", {"status": "REPLIED"}, format="json")
        assert reply.status_code == 200, reply.content
        outputs = [worker.communicate(timeout=180) for worker in workers]

        for worker, (out, err) in zip(workers, outputs):
            assert worker.returncode == 0, err
        recipients = Counter(smtp_server.recipients())
        twice = {email: n for email, n in recipients.items() if n > 1}
        assert not twice, f"round {round_number}: mailed more than once: {twice}"
        leads = {lead.email: lead for lead in Lead.objects.filter(campaign=campaign)}
        replier.refresh_from_db()
        assert (replier.status, replier.next_action_at) == (Lead.Status.REPLIED, None), round_number
        assert recipients[replier.email] <= 1
        for email, lead in leads.items():
            sent = OutreachAttempt.objects.filter(lead=lead, status=OutreachAttempt.Status.SENT).count()
            assert lead.attempt_count == sent == recipients[email], (round_number, email, lead.status)
            if sent and lead.pk != replier.pk:
                # Contacted leads stay contacted, and their next step waits its delay.
                assert lead.status == Lead.Status.CONTACTED, (round_number, email, lead.status)
                assert lead.next_action_at is not None and lead.next_action_at > timezone.now() + timedelta(days=1)
        # Every lead not replied to was mailed exactly once: nothing lost, nothing doubled.
        assert len(recipients) >= IMPORTED - 1
        assert not OutreachAttempt.objects.filter(campaign=campaign, status__in=["claimed", "unknown"]).exists()
