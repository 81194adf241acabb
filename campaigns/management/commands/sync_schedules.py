"""Make the scheduler's schedules match cam_project/schedules.py: `sync_schedules [--dry-run]`.

Idempotent: a schedule already as declared is left alone (its next run too); one whose function
or interval changed is updated; a "cam: " schedule no longer declared is deleted. Run it after
`migrate` on every deploy (README, "Operations").
"""

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.utils import timezone
from django_q.models import Schedule

from cam_project.schedules import PREFIX, declared


def _lock_out_other_syncs() -> None:
    """Two deploys syncing at once must not both create a schedule: rows that do not exist yet
    cannot be locked, so PostgreSQL takes a transaction-level advisory lock; SQLite's
    transactions already take the database's write lock when they begin (settings.py)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('cam: sync_schedules'))")


class Command(BaseCommand):
    help = "Create, update or delete CAM's django-q2 schedules so they match cam_project/schedules.py."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Say what would change, change nothing.")

    def handle(self, *args, dry_run=False, **options):
        # The table the clusters' heartbeats go to, in case it is missing (an install that used
        # Redis before); does nothing when it exists or with Redis.
        if not dry_run:
            call_command("createcachetable", verbosity=0)
        changes = []
        with transaction.atomic():
            _lock_out_other_syncs()
            wanted = {d.name: d for d in declared()}
            existing = {}
            for schedule in Schedule.objects.select_for_update().filter(name__startswith=PREFIX).order_by("id"):
                if schedule.name in existing:  # left by an older version's race: one of each is enough
                    changes.append(f"deleted  {schedule.name} (duplicate #{schedule.pk})")
                    if not dry_run:
                        schedule.delete()
                    continue
                existing[schedule.name] = schedule
            for name, d in wanted.items():
                schedule = existing.get(name)
                fields = {"func": d.func, "schedule_type": Schedule.MINUTES, "minutes": d.minutes, "repeats": -1,
                          "args": None, "kwargs": None, "cron": None}
                if schedule is None:
                    changes.append(f"created  {name}: {d.func} every {d.minutes} min")
                    if not dry_run:
                        Schedule.objects.create(name=name, next_run=timezone.now(), **fields)
                    continue
                differs = {k: v for k, v in fields.items() if getattr(schedule, k) != v}
                if differs:
                    changes.append(f"updated  {name}: {', '.join(sorted(differs))}")
                    if not dry_run:
                        for k, v in differs.items():
                            setattr(schedule, k, v)
                        schedule.next_run = timezone.now()
                        schedule.save()
            for name, schedule in existing.items():
                if name not in wanted:
                    changes.append(f"deleted  {name}")
                    if not dry_run:
                        schedule.delete()
        if options["verbosity"] < 1:
            return
        for line in changes:
            self.stdout.write(("would be " if dry_run else "") + line)
        self.stdout.write(f"{len(wanted)} schedule(s) declared, {len(changes)} change(s){' (dry run)' if dry_run else ''}.")
