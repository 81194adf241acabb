"""Benchmarks of the engine on a throw-away SQLite database.

    make bench                       # or: .venv/bin/python bench/bench_cycle.py --rows 20000 --repeat 5

Measures, as medians over --repeat runs:
  * import_leads of a generated CSV (rows/s, and peak Python memory of the import);
  * the first dry-run cycle of a campaign whose CSV source holds --cycle-rows leads
    (discovery + enrichment of up to CAM_MAX_NEW_LEADS/CAM_MAX_ENRICHED, outreach preview);
  * a steady-state dry-run cycle of a campaign whose source has nothing new;
  * a live cycle sending 20 mails to a local aiosmtpd server;
  * dry-run cycles of a campaign with an Apollo source (100 people a cycle) and Dropcontact,
    against leads.fake_providers on 127.0.0.1: leads per cycle, credits per lead, time per cycle;
  * the send task: how fast one run sends through two mailboxes with no gap (their capacity),
    and, minute by minute over an 8-hour window, how the default gap (120 s + up to 60 s of
    jitter) spreads each mailbox's day: sends per minute per mailbox, and the longest burst;
  * the inbox: message_parse alone (messages classified a second), and the inbox reader over
    1,000 answers in a local Dovecot (fetched, matched, stored and acted on a second);
  * the leads CSV export, streamed: time and peak memory at 50,000 and 200,000 leads;
  * the dashboard's page with 1,000 campaigns, per sort.
"""

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="cam-bench-"))
os.environ["CAM_VAR_DIR"] = str(WORK)
os.environ["CAM_IMPORT_DIR"] = str(WORK)  # the CSV sources' files are written there
os.environ["DATABASE_URL"] = ""  # always a throw-away SQLite file: never write into a real database
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cam_project.settings")
os.environ["CAM_LOG_LEVEL"] = "ERROR"
os.environ["CAM_POSTAL_ADDRESS"] = "Bench Ltd, 1 Bench Road, Paris"  # live sending needs one

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from campaigns.cycle import cycle_run  # noqa: E402
from campaigns.models import Campaign  # noqa: E402
from leads.importing import leads_import_csv  # noqa: E402
from leads.models import LeadSource  # noqa: E402


def write_csv(path: Path, rows: int) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "first_name", "last_name", "company", "job_title", "company_size", "industry", "website"])
        for i in range(rows):
            bad = i % 100 == 99  # 1% malformed, as real exports have
            writer.writerow([f"person{i}@" if bad else f"person{i}@company{i % 5000}.example", f"First{i}", f"Last{i}",
                             f"Company {i % 5000}", "Head of Growth" if i % 3 else "", "11-50", "SaaS", ""])
    return path


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def bench_import(rows: int, repeat: int) -> None:
    path = write_csv(WORK / f"import-{rows}.csv", rows)
    times = []
    for run in range(repeat):
        campaign = Campaign.objects.create(name=f"bench import {run}")
        seconds, report = timed(lambda: leads_import_csv(campaign=campaign, path=path, now=timezone.now()))
        times.append(seconds)
    # Memory in a separate run: tracemalloc slows Python down several times.
    campaign = Campaign.objects.create(name="bench import memory")
    tracemalloc.start()
    leads_import_csv(campaign=campaign, path=path, now=timezone.now())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    median = statistics.median(times)
    print(f"import_leads {rows:,} rows: median {median:.2f} s ({rows / median:,.0f} rows/s), "
          f"imported {report.imported:,}, rejected {len(report.rejected):,}, "
          f"peak traced memory {peak / 2**20:.1f} MiB  (runs: {', '.join(f'{t:.2f}' for t in times)})")


def bench_dry_cycle(rows: int, repeat: int) -> None:
    path = write_csv(WORK / f"cycle-{rows}.csv", rows)
    times = []
    for run in range(repeat):
        campaign = Campaign.objects.create(name=f"bench cycle {run}", target_clients=1000)
        LeadSource.objects.create(campaign=campaign, kind="csv", settings={"path": str(path)})
        seconds, result = timed(lambda: cycle_run(campaign=campaign, now=timezone.now(), dry_run=True))
        times.append(seconds)
    print(f"first dry-run cycle, CSV source of {rows:,} rows: median {statistics.median(times):.2f} s "
          f"(discovered {result.leads_discovered}, enriched {result.leads_enriched}, would send {result.outreach_sent})"
          f"  (runs: {', '.join(f'{t:.2f}' for t in times)})")


def bench_steady_cycle(rows: int, repeat: int) -> None:
    """A campaign whose source has nothing new: the cycle re-reads and dedupes the whole file."""
    path = write_csv(WORK / f"steady-{rows}.csv", rows)
    campaign = Campaign.objects.create(name="bench steady", target_clients=100000)
    LeadSource.objects.create(campaign=campaign, kind="csv", settings={"path": str(path)})
    leads_import_csv(campaign=campaign, path=path, now=timezone.now())
    cycle_run(campaign=campaign, now=timezone.now(), max_enriched=rows)
    times = []
    for _ in range(repeat):
        seconds, result = timed(lambda: cycle_run(campaign=campaign, now=timezone.now(), dry_run=True))
        assert result.leads_discovered == 0, result
        times.append(seconds)
    print(f"steady dry-run cycle, {rows:,} known leads, nothing new: median {statistics.median(times):.2f} s "
          f"(would send {result.outreach_sent})  (runs: {', '.join(f'{t:.2f}' for t in times)})")


def bench_live_cycle(repeat: int) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    controller = Controller(Sink(), hostname="127.0.0.1", port=8026)
    controller.start()
    path = write_csv(WORK / "live.csv", 100)
    times = []
    try:
        with override_settings(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                               EMAIL_HOST="127.0.0.1", EMAIL_PORT=8026, EMAIL_USE_TLS=False):
            for run in range(repeat):
                campaign = Campaign.objects.create(name=f"bench live {run}", target_clients=1000)
                LeadSource.objects.create(campaign=campaign, kind="csv", settings={"path": str(path)})
                cycle_run(campaign=campaign, now=timezone.now(), dry_run=True)  # discover + enrich first
                seconds, result = timed(lambda: cycle_run(campaign=campaign, now=timezone.now(), dry_run=False))
                assert result.outreach_sent == 20, result
                times.append(seconds)
    finally:
        controller.stop()
    median = statistics.median(times)
    print(f"live cycle sending 20 mails over SMTP: median {median:.3f} s ({median / 20 * 1000:.1f} ms per mail)"
          f"  (runs: {', '.join(f'{t:.3f}' for t in times)})")


def bench_apollo_cycle(repeat: int) -> None:
    from leads.credits import credits_summary
    from leads.fake_providers import FakeProviders

    fake = FakeProviders(people=2000)
    url = fake.start()
    times, found, credits = [], [], []
    try:
        with override_settings(APOLLO_API_KEY="bench", APOLLO_BASE_URL=url, DROPCONTACT_API_KEY="bench",
                               DROPCONTACT_BASE_URL=url, CAM_DROPCONTACT_POLL_SECONDS=0.2):
            campaign = Campaign.objects.create(name="bench apollo", target_clients=1000, apollo_credits_per_day=10_000,
                                               dropcontact_credits_per_day=10_000)
            LeadSource.objects.create(campaign=campaign, kind="apollo",
                                      settings={"person_titles": ["CEO"], "per_cycle": 100})
            for _ in range(repeat):
                before = credits_summary(campaign=campaign, now=timezone.now())
                seconds, result = timed(lambda: cycle_run(campaign=campaign, now=timezone.now(), dry_run=True))
                after = credits_summary(campaign=campaign, now=timezone.now())
                assert not result.errors and result.leads_enriched == result.leads_discovered, result
                times.append(seconds)
                found.append(result.leads_discovered)
                credits.append(sum(after[p]["total"] - before[p]["total"] for p in after))
    finally:
        fake.stop()
    leads = statistics.median(found)
    print(f"dry-run cycle, Apollo source (100 people a cycle) + Dropcontact, local fake server: "
          f"median {statistics.median(times):.2f} s, {leads:.0f} leads a cycle, "
          f"{statistics.median(c / max(n, 1) for c, n in zip(credits, found)):.2f} credits a lead "
          f"(Apollo + Dropcontact)  (runs: {', '.join(f'{t:.2f}' for t in times)})")


def bench_send_task(repeat: int) -> None:
    from datetime import datetime, time as clock, timedelta

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    from campaigns.models import CycleRun, MessageStep
    from campaigns.runs import cycle_start
    from leads.models import Lead
    from outreach.models import Mailbox, OutreachAttempt

    servers = [Controller(Sink(), hostname="127.0.0.1", port=port) for port in (8027, 8028)]
    for server in servers:
        server.start()

    def campaign_with_mailboxes(name: str, leads: int, **limits) -> tuple[Campaign, list[Mailbox]]:
        campaign = Campaign.objects.create(name=name, target_clients=100_000, max_emails_per_day=100_000, live=True)
        MessageStep.objects.create(campaign=campaign, position=1, subject_template="Hi {{ company }}",
                                   body_template="Hello {{ first_name }}")
        boxes = [Mailbox.objects.create(name=f"{name} {i}", from_email=f"box{i}@{campaign.pk}.example",
                                        smtp_host="127.0.0.1", smtp_port=8027 + i, smtp_security="none", **limits)
                 for i in range(2)]
        for box in boxes:
            box.campaigns.add(campaign)
        Lead.objects.bulk_create(
            Lead(campaign=campaign, email=f"p{i}@c{i}.{campaign.pk}.example", first_name="Ann", company=f"Co {i}",
                 status=Lead.Status.ENRICHED, score=0.5, next_action_at=timezone.now() - timedelta(days=1))
            for i in range(leads)
        )
        return campaign, boxes

    try:
        times = []
        for run in range(repeat):
            campaign, _ = campaign_with_mailboxes(f"bench send {run}", 200, daily_cap=100, min_gap_seconds=0,
                                                  gap_jitter_seconds=0, window_days=list(range(7)),
                                                  window_start=clock(0), window_end=clock(0))
            seconds, result = timed(lambda: cycle_start(campaign=campaign, trigger=CycleRun.Trigger.SEND,
                                                        dry_run=None, send_only=True))
            assert result.outreach_sent == 200, result
            times.append(seconds)
        median = statistics.median(times)
        print(f"send task, 200 mails through 2 mailboxes with no gap: median {median:.2f} s "
              f"({200 / median * 60 / 2:,.0f} sends a minute per mailbox at most)  "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)})")

        # A day of the send task, minute by minute, with the defaults (gap 120 s, jitter 60 s).
        campaign, boxes = campaign_with_mailboxes("bench spread", 400, daily_cap=200, window_days=list(range(7)),
                                                  window_start=clock(9), window_end=clock(17), timezone="UTC")
        day = timezone.now().astimezone(timezone.get_fixed_timezone(0)).date() + timedelta(days=1)
        start = datetime.combine(day, clock(8, 30), tzinfo=timezone.get_fixed_timezone(0))
        durations = []
        for minute in range(9 * 60):
            seconds, _ = timed(lambda: cycle_start(campaign=campaign, trigger=CycleRun.Trigger.SEND, dry_run=None,
                                                   send_only=True, now=start + timedelta(minutes=minute)))
            durations.append(seconds)
        for box in boxes:
            sent = list(OutreachAttempt.objects.filter(mailbox=box, status="sent").values_list("created_at", flat=True))
            per_minute = {}
            for at in sent:
                per_minute[at.replace(second=0)] = per_minute.get(at.replace(second=0), 0) + 1
            gaps = sorted((b - a).total_seconds() for a, b in zip(sorted(sent), sorted(sent)[1:]))
            print(f"send task every minute over a 09:00-17:00 window, {box.name}: {len(sent)} sent "
                  f"({len(sent) / 480:.2f} a minute), at most {max(per_minute.values())} in one minute, "
                  f"first {min(sent):%H:%M} last {max(sent):%H:%M}, median gap {statistics.median(gaps):.0f} s")
        print(f"send task run (one campaign, two mailboxes): median {statistics.median(durations) * 1000:.0f} ms")
    finally:
        for server in servers:
            server.stop()


def bench_inbox(repeat: int) -> None:
    """Classifying what comes back: message_parse alone over the sample messages, then the whole
    inbox reader (IMAP fetch from a local Dovecot, match, store, act) over 1,000 answers."""
    import imaplib
    import shutil
    from datetime import timedelta

    from campaigns.models import MessageStep
    from leads.models import Lead
    from outreach.inbound import message_parse
    from outreach.inbox import inbox_poll
    from outreach.models import InboundMessage, Mailbox, OutreachAttempt
    from outreach.tests.imap_server import DOVECOT, start_dovecot, stop_dovecot

    samples = [path.read_bytes() for path in sorted((ROOT / "outreach" / "tests" / "mail").glob("*.eml"))]
    rates = []
    for _ in range(repeat):
        seconds, _ = timed(lambda: [message_parse(raw) for _ in range(200) for raw in samples])
        rates.append(200 * len(samples) / seconds)
    print(f"message_parse (classify, strip quotes, read DSNs) over {len(samples)} samples x 200: "
          f"median {statistics.median(rates):,.0f} messages/s")

    if not Path(DOVECOT).exists():
        print(f"inbox reader: skipped ({DOVECOT} is missing; `make test` installs it)")
        return
    count = 1000
    root = Path(tempfile.mkdtemp(prefix="cam-bench-dovecot-"))
    server, process = start_dovecot(root)
    try:
        times = []
        for run in range(repeat):
            campaign = Campaign.objects.create(name=f"bench inbox {run}", target_clients=100_000,
                                               max_emails_per_day=100_000)
            MessageStep.objects.create(campaign=campaign, position=1, subject_template="Hi", body_template="Hello")
            folder = f"Bench{run}"
            mailbox = Mailbox.objects.create(name=folder, from_email=f"alex{run}@agency.example", smtp_host="127.0.0.1",
                                             imap_host=server.host, imap_port=server.port, imap_security="none",
                                             imap_username=server.user, imap_password=server.password,
                                             imap_inbox=folder, imap_sent="Sent")
            now = timezone.now()
            leads = Lead.objects.bulk_create(
                Lead(campaign=campaign, email=f"p{i}@c{i}.r{run}.example", status=Lead.Status.CONTACTED,
                     attempt_count=1, first_contacted_at=now, last_contacted_at=now, score=0.5,
                     next_action_at=now + timedelta(days=2)) for i in range(count))
            attempts = OutreachAttempt.objects.bulk_create(
                OutreachAttempt(campaign=campaign, lead=lead, mailbox=mailbox, step=1, status="sent",
                                message_id=f"<{run}.{lead.pk}@agency.example>", created_at=now) for lead in leads)
            kinds = ["gmail_reply.eml"] * 7 + ["ooo_auto_submitted.eml", "postfix_hard_bounce.eml", "unsubscribe_reply.eml"]
            originals = {"gmail_reply.eml": "<177313.1@agency.example>", "ooo_auto_submitted.eml": "<177313.1@agency.example>",
                         "postfix_hard_bounce.eml": "<177313.9@agency.example>",
                         "unsubscribe_reply.eml": "<177313.3@agency.example>"}
            texts = {name: (ROOT / "outreach" / "tests" / "mail" / name).read_bytes() for name in originals}
            with imaplib.IMAP4(server.host, server.port) as imap:
                imap.login(server.user, server.password)
                imap.create(folder)
                for i, attempt in enumerate(attempts):
                    name = kinds[i % len(kinds)]
                    raw = texts[name].replace(originals[name].encode(), attempt.message_id.encode())
                    imap.append(folder, "", imaplib.Time2Internaldate(time.time()), raw)
                imap.logout()
            started = time.perf_counter()
            while inbox_poll(mailbox=mailbox).more:
                pass
            times.append(time.perf_counter() - started)
            assert InboundMessage.objects.filter(mailbox=mailbox).count() == count
        median = statistics.median(times)
        print(f"inbox reader, {count} answers (70 % replies, 10 % each out-of-office, bounce, unsubscribe) from "
              f"Dovecot: median {median:.2f} s, {count / median:,.0f} messages/s read, matched and acted on "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)})")
    finally:
        stop_dovecot(process)
        shutil.rmtree(root, ignore_errors=True)


def bench_export(repeat: int) -> None:
    """The leads CSV export, streamed: time and peak traced Python memory for 50,000 and 200,000
    leads (flat peak memory: rows are read and written a chunk at a time)."""
    from leads.exports import leads_csv
    from leads.models import Lead

    for count in (50_000, 200_000):
        campaign = Campaign.objects.create(name=f"bench export {count}", target_clients=10)
        for start in range(0, count, 10_000):
            Lead.objects.bulk_create(
                Lead(campaign=campaign, email=f"p{i}@c{i}.example", first_name="Ann", last_name="Lee",
                     company=f"=Co {i}", job_title="CTO", score=0.5, origin="bench") for i in range(start, start + 10_000))
        times, peaks, size = [], [], 0
        for _ in range(repeat):
            tracemalloc.start()
            started = time.perf_counter()
            response = leads_csv(campaign=campaign, leads=Lead.objects.filter(campaign=campaign).order_by("-score", "id"))
            size = sum(len(line) for line in response.streaming_content)
            times.append(time.perf_counter() - started)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        median = statistics.median(times)
        print(f"leads CSV export, {count:,} leads ({size / 1e6:.1f} MB): median {median:.2f} s, "
              f"{count / median:,.0f} rows/s, peak traced memory {statistics.median(peaks) / 2**20:.1f} MiB")


def bench_dashboard(repeat: int) -> None:
    """The console's dashboard with 1,000 campaigns (20 leads and a run each): one page's time,
    per sort."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from campaigns.models import CycleRun
    from leads.models import Lead

    campaigns = Campaign.objects.bulk_create(
        Campaign(name=f"bench dashboard {i}", target_clients=10 + i % 7, active=i % 3 != 0) for i in range(1000))
    Lead.objects.bulk_create(
        Lead(campaign=c, email=f"p{j}@c{c.pk}.example", status="QUALIFIED" if j < i % 5 else "NEW")
        for i, c in enumerate(campaigns) for j in range(20))
    now = timezone.now()
    CycleRun.objects.bulk_create(CycleRun(campaign=c, trigger="api", dry_run=True, holder="bench", started_at=now)
                                 for c in campaigns)
    user = get_user_model().objects.create_superuser("bench-dashboard", "b@example.org", "pw")
    client = Client()
    client.force_login(user)
    for sort in ("recent", "progress", "last_run"):
        times = []
        for _ in range(max(repeat, 3)):
            seconds, response = timed(lambda: client.get(f"/?sort={sort}", SERVER_NAME="localhost"))
            assert response.status_code == 200, response.status_code
            times.append(seconds)
        print(f"dashboard, 1,000 campaigns / 20,000 leads, sorted by {sort}: median {statistics.median(times) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--cycle-rows", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["import", "dry", "steady", "live", "apollo", "send", "inbox", "export", "dashboard"],
                        help="run one benchmark")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    print(f"database: {connection.vendor}; Python {sys.version.split()[0]}; {os.cpu_count()} cores")
    benches = {
        "import": lambda: bench_import(args.rows, args.repeat),
        "dry": lambda: bench_dry_cycle(args.cycle_rows, args.repeat),
        "steady": lambda: bench_steady_cycle(args.cycle_rows, args.repeat),
        "live": lambda: bench_live_cycle(args.repeat),
        "apollo": lambda: bench_apollo_cycle(args.repeat),
        "send": lambda: bench_send_task(args.repeat),
        "inbox": lambda: bench_inbox(args.repeat),
        "export": lambda: bench_export(args.repeat),
        "dashboard": lambda: bench_dashboard(args.repeat),
    }
    for name, bench in benches.items():
        if args.only in (None, name):
            bench()


if __name__ == "__main__":
    main()
