"""Every schedule CAM runs, in one place (SPEC §7). `python manage.py sync_schedules` makes the
django-q2 schedules match this list by name; nothing creates schedules at start-up.

A schedule here fires on the cluster's scheduler (`python manage.py qcluster`); with several
clusters, each schedule still fires once per interval (they share the schedule rows).
"""

from dataclasses import dataclass

from django.conf import settings

# Schedules CAM owns are named with this prefix: sync_schedules removes those no longer listed
# and leaves any other schedule staff made in the admin alone.
PREFIX = "cam: "


@dataclass(frozen=True)
class Declared:
    name: str
    func: str
    minutes: int


def declared() -> list[Declared]:
    return [
        Declared(PREFIX + "campaign cycles", "campaigns.tasks.campaign_cycles_fan_out", settings.CAM_CYCLE_MINUTES),
        Declared(PREFIX + "send due mail", "campaigns.tasks.campaign_sends_fan_out", settings.CAM_SEND_MINUTES),
        Declared(PREFIX + "read inboxes", "outreach.tasks.inboxes_fan_out", settings.CAM_INBOX_MINUTES),
        Declared(PREFIX + "prune run history", "campaigns.tasks.runs_prune", 24 * 60),
        Declared(PREFIX + "prune imports", "leads.tasks.import_jobs_old_prune", 24 * 60),
    ]
