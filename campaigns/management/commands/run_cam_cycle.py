"""Run CAM cycles from cron or by hand: `run_cam_cycle --campaign-id N | --all [--no-dry-run] [--json]`.

Each cycle takes its campaign's lease (campaigns.runs) and is recorded in its run history; a
campaign whose cycle is already running elsewhere (the scheduler, another command) is left to
it: its result says "already running".

Exit status: 0 when every phase ran (or the campaign's cycle was already running); 1 when the
campaign was not found; 3 when a mail server or database problem stopped a phase (the result
says which and why), so cron and schedulers notice.
"""

import argparse
import json

from django.core.management.base import BaseCommand, CommandError

from cam_project.validators import printable
from campaigns.cycle import CycleResult
from campaigns.models import Campaign, CycleRun
from campaigns.runs import cycle_start, cycle_start_all

EXIT_PHASE_STOPPED = 3

_COLUMNS = (
    ("campaign", lambda r: printable(f"#{r.campaign_id} {r.campaign_name}"[:32])),
    ("discovered", lambda r: r.leads_discovered),
    ("enriched", lambda r: r.leads_enriched),
    ("sent", lambda r: r.outreach_sent),
    ("failed", lambda r: r.outreach_failed),
    ("unknown", lambda r: r.outreach_unknown),
    ("skipped", lambda r: r.outreach_skipped),
    # Of the skipped: mail waiting for a mailbox's window, gap or cap (the send task sends it).
    ("waiting", lambda r: r.outreach_waiting),
    ("lost", lambda r: r.leads_lost),
    ("paused", lambda r: "yes" if r.campaign_paused else "no"),
    ("errors", lambda r: len(r.errors)),
)


class Command(BaseCommand):
    help = "Run a CAM cycle (discover, enrich, reach out, check targets). Dry run unless --no-dry-run."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--campaign-id", type=int, help="Run this campaign (even if it has no leads yet).")
        which.add_argument("--all", action="store_true", help="Run every active campaign.")
        parser.add_argument(
            "--dry-run", action=argparse.BooleanOptionalAction, default=True,
            help="Render and count what would be sent without sending (default). "
                 "--no-dry-run sends real email.",
        )
        parser.add_argument(
            "--follow-live", action="store_true",
            help="What the scheduler does: send for real for live campaigns, dry runs for the others "
                 "(instead of --dry-run / --no-dry-run for all).",
        )
        parser.add_argument("--json", action="store_true", help="Print the result(s) as JSON.")

    def handle(self, *args, **options):
        dry_run, run_all = options["dry_run"], options["all"]
        # No `now` passed: each cycle is dated when it starts under its lease. One `now` for a whole
        # --all run would date a later campaign's sends at the command's start (the wrong day's
        # quota past midnight; a send still in progress that looks abandoned to staff).
        if options["follow_live"]:
            dry_run = None  # each campaign's live switch decides
        if run_all:
            results = cycle_start_all(trigger=CycleRun.Trigger.COMMAND, dry_run=dry_run)
        else:
            campaign = Campaign.objects.filter(pk=options["campaign_id"]).first()
            if campaign is None:
                raise CommandError(f"campaign {options['campaign_id']} not found")
            results = [cycle_start(campaign=campaign, trigger=CycleRun.Trigger.COMMAND, dry_run=dry_run)]
        if options["json"]:
            payload = [r.as_dict() for r in results] if run_all else results[0].as_dict()
            self.stdout.write(json.dumps(payload, indent=2, default=str))
        else:
            self._print_table(results, dry_run)
        stopped = [r for r in results if r.stopped_phases]
        if stopped:
            for r in stopped:
                self.stderr.write(printable(f"#{r.campaign_id} {r.campaign_name}: stopped "
                                            f"({', '.join(r.stopped_phases)}): {'; '.join(r.errors)}"))
            raise SystemExit(EXIT_PHASE_STOPPED)

    def _print_table(self, results: list[CycleResult], dry_run: bool) -> None:
        total = sum(r.outreach_sent for r in results if not r.dry_run)
        if dry_run is None:
            live = [r for r in results if not r.dry_run]
            mode = f"LIVE campaigns: {total} email{'s' if total != 1 else ''} sent; the others ran dry"
            if not live:
                mode = "No live campaign: every cycle ran dry and sent nothing"
        elif dry_run:
            mode = "DRY RUN: nothing was sent; 'sent' counts what would be sent"
        elif total:
            mode = f"LIVE: {total} email{'s' if total != 1 else ''} sent"
        else:
            mode = "LIVE run: no email sent (see the notes and errors below)"
        self.stdout.write(self.style.WARNING(mode) if dry_run else self.style.SUCCESS(mode))
        if not results:
            self.stdout.write("No active campaigns.")
            return
        rows = [[str(get(r)) for _, get in _COLUMNS] for r in results]
        widths = [max(len(name), *(len(row[i]) for row in rows)) for i, (name, _) in enumerate(_COLUMNS)]
        line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        self.stdout.write(line([name for name, _ in _COLUMNS]))
        self.stdout.write("  ".join("-" * w for w in widths))
        for row in rows:
            self.stdout.write(line(row))
        for r in results:
            # Names, subjects and errors come from leads and servers: no escape reaches the terminal.
            details = [f"paused: {printable(r.pause_reason)}"] if r.campaign_paused else []
            details += [f"note: {printable(n)}" for n in r.notes]
            details += [self.style.ERROR(f"error: {printable(e)}") for e in r.errors]
            if r.dry_run and r.previews:
                details.append("would send:")
                details += [printable(f"  step {p['step']} to {p['email']}: {p['subject']}") for p in r.previews[:10]]
                if len(r.previews) > 10:
                    details.append(f"  … and {r.outreach_sent - 10} more")
            if details:
                self.stdout.write("\n" + printable(f"#{r.campaign_id} {r.campaign_name}"))
                for d in details:
                    self.stdout.write(f"  {d}")

