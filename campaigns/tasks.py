"""What the scheduler runs (cam_project/schedules.py declares when): django-q2 tasks.

Tasks take ids, not objects, and read everything again when they run: a task may wait in the
queue, or be delivered twice (the ORM broker redelivers a task whose worker died). Running one
twice is harmless: the campaign's lease keeps its cycle single, the claim keeps sends once.
"""

import logging

from django_q.tasks import async_task

from campaigns.models import Campaign, CycleRun
from campaigns.runs import cycle_start

logger = logging.getLogger(__name__)


def campaign_cycles_fan_out() -> int:
    """One task per active campaign, so every worker of every machine shares the cycles."""
    ids = list(Campaign.objects.filter(active=True).order_by("id").values_list("pk", flat=True))
    for campaign_id in ids:
        async_task("campaigns.tasks.campaign_cycle", campaign_id, task_name=f"cycle of campaign {campaign_id}",
                   group="cam-cycles")
    return len(ids)


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
