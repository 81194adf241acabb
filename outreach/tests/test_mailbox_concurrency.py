"""A mailbox's cap holds across campaigns when processes race (SPEC §8): two live campaigns
share one mailbox, their leads come from `import_leads`, and cycles and send tasks run at once
in separate OS processes, several per campaign. The cap is checked under the mailbox's row
lock in the claim, so exactly the cap goes through it, and nobody is mailed twice."""

import os
import subprocess
import sys
from collections import Counter

import pytest
from django.conf import settings
from django.core.management import call_command

from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.models import Lead
from outreach.models import OutreachAttempt
from outreach.tests.factories import MailboxFactory

pytestmark = pytest.mark.django_db(transaction=True)

CAP = 7
LEADS_PER_CAMPAIGN = 12
PROCESSES_PER_CAMPAIGN = 4  # two cycles (one gets the lease) and two send tasks (no lease)


def _import(campaign, path, prefix: str):
    # The same person in both campaigns too: one conversation per person holds under the race.
    rows = ["email,first_name,company,job_title"] + [
        f"{prefix}{i}@lead{i}.example,Ann{i},Co{i},CTO" for i in range(LEADS_PER_CAMPAIGN - 1)
    ] + ["both@shared.example,Pat,Shared,CTO"]
    path.write_text("\n".join(rows) + "\n")
    call_command("import_leads", "--campaign-id", str(campaign.pk), str(path), stdout=open(os.devnull, "w"))


def test_processes_racing_on_two_campaigns_that_share_a_mailbox_send_exactly_its_cap(
    smtp_servers, database_url, tmp_path
):
    server = smtp_servers()
    mailbox = MailboxFactory(smtp_port=server.port, daily_cap=CAP)
    campaigns = []
    for name in ("a", "b"):
        # Thresholds of 1.0: nobody QUALIFIED, so the goal never cuts outreach short.
        campaign = CampaignFactory(max_emails_per_day=20, target_clients=100, qualification_threshold=1.0,
                                   live=True, postal_address="Agency, 1 Road, Paris")
        MessageStepFactory(campaign=campaign, position=1)
        mailbox.campaigns.add(campaign)
        _import(campaign, tmp_path / f"{name}.csv", f"{name}-")
        campaigns.append(campaign)
    assert Lead.objects.filter(status=Lead.Status.NEW).count() == 2 * LEADS_PER_CAMPAIGN

    env = {**os.environ, "DATABASE_URL": database_url, "MAKE_WEBHOOK_URL": "", "CAM_LOG_LEVEL": "ERROR",
           "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": "9"}  # the environment's server is never used
    commands = []
    for campaign in campaigns:
        cycle = [sys.executable, "manage.py", "run_cam_cycle", "--campaign-id", str(campaign.pk), "--no-dry-run"]
        send = [sys.executable, "manage.py", "shell", "--no-imports", "-c",
                f"from campaigns.tasks import campaign_send; print(campaign_send({campaign.pk}))"]
        commands += [cycle, cycle, send, send]
    # The cycles enrich first; send tasks started a little later find ENRICHED leads to race on.
    processes = [subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for command in commands]
    outputs = [process.communicate(timeout=180) for process in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, (out, err)
    # Whatever the first wave left (leads enriched after the send tasks looked), a second wave sends.
    second = [subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for command in commands]
    for process in second:
        process.communicate(timeout=180)

    recipients = Counter(server.recipients())
    assert sum(recipients.values()) == CAP, recipients
    assert max(recipients.values()) == 1, "someone was mailed twice"
    through_mailbox = OutreachAttempt.objects.filter(mailbox=mailbox)
    assert through_mailbox.filter(status="sent").count() == CAP
    assert not through_mailbox.exclude(status="sent").exists()
    assert not OutreachAttempt.objects.filter(mailbox__isnull=True).exclude(status="skipped").exists()
    # Whichever campaign got there first, the shared address got one first email, not two.
    assert recipients["both@shared.example"] <= 1
