"""How the installation is doing: `cam_status [--json]` (README, "Operations").

The scheduler first (clusters and their last heartbeat, the queue, failed tasks, schedules),
then a line per campaign: live or dry, its last run (when, how long, what it sent, its errors),
today's quota used, who holds its lease, and the sends needing attention. Exits 2 when the
scheduler's queue (Redis with REDIS_URL) cannot be reached, after printing the rest.
"""

import json

from django.core.management.base import BaseCommand
from django.utils import timezone

from cam_project.validators import printable
from campaigns.status import status_report


EXIT_QUEUE_UNREACHABLE = 2


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


class Command(BaseCommand):
    help = "Print the scheduler's and every campaign's state: last run, quota used today, lease, attention."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, **options):
        report = status_report(now=timezone.now())
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2, default=str))
        else:
            self._scheduler(report["scheduler"])
            self._campaigns(report["campaigns"])
        if report["scheduler"]["queue_error"]:
            raise SystemExit(EXIT_QUEUE_UNREACHABLE)  # for monitoring: everything else was printed

    def _scheduler(self, s: dict) -> None:
        w = self.stdout.write
        w("Scheduler")
        if s["queue_error"]:
            w(self.style.ERROR(printable(f"  the queue cannot be reached (REDIS_URL?): {s['queue_error']}")))
        elif s["clusters"]:
            for c in s["clusters"]:
                w(f"  cluster {c['host']} (pid {c['pid']}): {c['status']}, {c['workers']} workers, "
                  f"heartbeat {ago(c['heartbeat_ago_seconds'])}")
        else:
            w(self.style.WARNING("  no cluster running: start one with `python manage.py qcluster` "
                                 "(scheduled cycles and background imports wait for it)"))
        last = s["last_task_finished"]
        w(f"  queue: {'?' if s['queued_tasks'] is None else s['queued_tasks']} waiting"
          + (f", {s['tasks_in_progress']} in progress" if s["tasks_in_progress"] is not None else "")
          + (f"; last task finished {last[:19].replace('T', ' ')}" if last else "; no task finished yet"))
        failed = s["failed_tasks_24h"]
        line = f"  failed tasks (24 h): {failed}"
        w(self.style.ERROR(line) if failed else line)
        for f in s["recent_failures"]:
            w(printable(f"    {f['stopped'][:19]} {f['name']}: {f['error'][:160]}"))
        if not s["schedules"]:
            w(self.style.WARNING("  no schedules: run `python manage.py sync_schedules`"))
        for sch in s["schedules"]:
            due = sch["next_run_in_seconds"] or 0
            when = f"next in {due} s" if due >= 0 else f"overdue by {ago(-due)[:-4]} (is a cluster running?)"
            w(f"  schedule {sch['name']!r}: every {sch['minutes']} min, {when}")

    def _campaigns(self, campaigns: list[dict]) -> None:
        w = self.stdout.write
        w("\nCampaigns")
        if not campaigns:
            w("  none yet")
            return
        header = ("#", "campaign", "state", "mode", "last run", "took", "sent", "errors", "today", "lease", "attention")
        rows = []
        for c in campaigns:
            run = c["last_run"]
            rows.append((
                str(c["id"]), printable(c["name"])[:28], "active" if c["active"] else "paused",
                "LIVE" if c["live"] else "dry",
                (f"{ago(run['ago_seconds'])} ({run['trigger']}, {'dry' if run['dry_run'] else 'live'}"
                 f"{'' if run['state'] == 'finished' else ', ' + run['state']})") if run else "never",
                f"{run['duration_seconds']:.1f} s" if run and run["duration_seconds"] is not None else "—",
                str(run["sent"]) if run else "—", str(len(run["errors"])) if run else "—",
                f"{c['quota_used']}/{c['quota']}", c["lease"] if c["lease"] == "free" else "held",
                str(c["needs_attention"]),
            ))
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        fmt = lambda cells: ("  " + "  ".join(cell.ljust(width) for cell, width in zip(cells, widths))).rstrip()
        w(fmt(header))
        for row in rows:
            w(fmt(row))
        for c in campaigns:
            details = []
            if c["pause_reason"]:
                details.append(f"paused: {c['pause_reason']}")
            if c["lease"] != "free":
                details.append(f"lease {c['lease']}")
            if c["needs_attention"]:
                details.append(f"{c['needs_attention']} send(s) need attention: attempts?status=claimed,unknown "
                               "or the campaign's console page")
            if c["last_run"]:
                details += [f"last run error: {e}" for e in c["last_run"]["errors"][:3]]
            if details:
                w("")
                w(printable(f"  #{c['id']} {c['name']}"))
                for d in details:
                    w(printable(f"    {d}"))
