"""What the scheduler runs (cam_project/schedules.py declares when): django-q2 tasks.

Tasks take ids, not objects, and read everything again when they run: a task may wait in the
queue, or be delivered twice (the ORM broker redelivers a task whose worker died). Running one
twice is harmless: the campaign's lease keeps its cycle single, the claim keeps sends once.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_q.tasks import async_task

from campaigns.models import Campaign, CycleRun
from leads.models import Lead
from leads.services import DUE_STATUSES
from campaigns.runs import cycle_start, leases_held

logger = logging.getLogger(__name__)


def _fan_out(campaigns, func: str, what: str) -> int:
    """Queue `func` once per campaign of `campaigns` whose cycle is not running now (its lease
    held): that cycle does the work, a task would only say "already running"."""
    running = leases_held().values("campaign_id")
    ids = list(campaigns.exclude(pk__in=running).order_by("id").values_list("pk", flat=True))
    for campaign_id in ids:
        async_task(f"campaigns.tasks.{func}", campaign_id, task_name=f"{what} of campaign {campaign_id}",
                   group=f"cam-{what}s")
    return len(ids)


def campaign_cycles_fan_out() -> int:
    """One task per active campaign, so every worker of every machine shares the cycles."""
    return _fan_out(Campaign.objects.filter(active=True), "campaign_cycle", "cycle")


def campaign_cycle(campaign_id: int) -> dict:
    """The scheduled cycle of one campaign: live if the campaign is live, else a dry run.
    Returns a short summary for the task's record; the run history has the whole result."""
    campaign = Campaign.objects.filter(pk=campaign_id, active=True).first()
    if campaign is None:
        return {"campaign_id": campaign_id, "note": "deleted or paused since it was queued: nothing done"}
    result = cycle_start(campaign=campaign, trigger=CycleRun.Trigger.SCHEDULE, dry_run=None)
    if result.errors:
        logger.warning("scheduled cycle of campaign %s: %s", campaign_id, "; ".join(result.errors))
    return {
        "campaign_id": campaign_id, "run_id": result.run_id, "dry_run": result.dry_run,
        "already_running": result.already_running, "sent": result.outreach_sent, "errors": len(result.errors),
    }


def campaign_sends_fan_out() -> int:
    """The send task (every CAM_SEND_MINUTES): one task per live campaign with mail due and no
    cycle running, which sends what its mailboxes' caps, gaps and windows allow by now, so a
    day's mail is spread over the window rather than sent in a burst by the cycle."""
    due = Lead.objects.filter(status__in=DUE_STATUSES, next_action_at__lte=timezone.now()).values("campaign_id")
    return _fan_out(Campaign.objects.filter(active=True, live=True, pk__in=due), "campaign_send", "send")


def campaign_send(campaign_id: int) -> dict:
    """Send what has become allowed for one live campaign, under its lease (a cycle running now
    sends it instead)."""
    campaign = Campaign.objects.filter(pk=campaign_id, active=True, live=True).first()
    if campaign is None:
        return {"campaign_id": campaign_id, "note": "deleted, paused or not live since it was queued: nothing done"}
    result = cycle_start(campaign=campaign, trigger=CycleRun.Trigger.SEND, dry_run=None, send_only=True)
    if result.errors:
        logger.warning("send task of campaign %s: %s", campaign_id, "; ".join(result.errors))
    return {
        "campaign_id": campaign_id, "run_id": result.run_id, "already_running": result.already_running,
        "sent": result.outreach_sent, "waiting": result.outreach_waiting, "errors": len(result.errors),
    }


def runs_prune() -> int:
    """Delete finished runs older than CAM_RUN_HISTORY_DAYS: a campaign cycled every 15 minutes
    adds 96 a day. Runs that never finished are kept (they explain a send needing attention)."""
    cutoff = timezone.now() - timedelta(days=settings.CAM_RUN_HISTORY_DAYS)
    deleted, _ = CycleRun.objects.filter(started_at__lt=cutoff, finished_at__isnull=False).delete()
    return deleted
