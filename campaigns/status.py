"""What an operator checks on an installation running unattended (SPEC §7): per campaign, live or
not, its last run, today's quota used, its lease and the sends needing attention; and the
scheduler: its clusters' heartbeats, the queue, failed tasks and the schedules. Read only.

`python manage.py cam_status [--json]` prints it; the console shows the campaign part.
"""

from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from campaigns.models import Campaign, CycleLease, CycleRun
from campaigns.runs import last_runs, lease_state, run_state
from cam_project.schedules import PREFIX
from outreach.limits import quota_day
from outreach.models import OutreachAttempt

FAILURE_WINDOW = timedelta(hours=24)


def run_summary(run: CycleRun | None, lease: CycleLease | None, now: datetime) -> dict | None:
    if run is None:
        return None
    errors = (run.result or {}).get("errors", [])
    return {
        "id": run.pk, "trigger": run.trigger, "dry_run": run.dry_run, "state": run_state(run, lease, now),
        "started_at": run.started_at.isoformat(), "ago_seconds": round((now - run.started_at).total_seconds()),
        "duration_seconds": run.duration_seconds, "sent": run.sent, "failed": run.failed, "unknown": run.unknown,
        "errors": errors,
    }


def campaigns_status(*, now: datetime, campaigns=None) -> list[dict]:
    """One row per campaign (all by default) in a fixed number of queries."""
    start, end = quota_day(now)
    rows = list(
        (campaigns if campaigns is not None else Campaign.objects.all())
        .order_by("id")
        .annotate(
            quota_used=Count("attempts", filter=Q(
                attempts__created_at__gte=start, attempts__created_at__lt=end,
                attempts__status__in=OutreachAttempt.QUOTA_STATUSES)),
            attention=Count("attempts", filter=Q(attempts__status__in=OutreachAttempt.ATTENTION_STATUSES)),
        )
    )
    runs = last_runs([c.pk for c in rows])
    leases = CycleLease.objects.in_bulk([c.pk for c in rows])
    report = []
    for campaign in rows:
        lease = leases.get(campaign.pk)
        report.append({
            "id": campaign.pk, "name": campaign.name, "active": campaign.active, "live": campaign.live,
            "pause_reason": campaign.pause_reason or None,
            "quota_used": campaign.quota_used, "quota": campaign.max_emails_per_day,
            "lease": lease_state(lease, now), "needs_attention": campaign.attention,
            "last_run": run_summary(runs.get(campaign.pk), lease, now),
        })
    return report


def scheduler_status(*, now: datetime) -> dict:
    """The clusters seen (their heartbeats expire within seconds of a cluster stopping), the
    queue, failed tasks of the last 24 hours and CAM's schedules."""
    from django_q.brokers import get_broker
    from django_q.models import Failure, Schedule, Success
    from django_q.status import Stat

    clusters, queued, in_progress, broker_error = [], None, None, None
    try:  # the queue and the heartbeats may be elsewhere (Redis): the rest is reported without them
        broker = get_broker()
        stats = Stat.get_all(broker=broker)
        queued, in_progress = broker.queue_size(), broker.lock_size()  # lock_size: None for Redis
    except Exception as exc:
        broker_error = f"{type(exc).__name__}: {exc}"[:300]
        stats = []
    clusters = [{
        "cluster": str(stat.cluster_id), "host": stat.host, "pid": stat.pid, "status": stat.status,
        "workers": len(stat.workers), "heartbeat": stat.timestamp.isoformat(),
        "heartbeat_ago_seconds": round((now - stat.timestamp).total_seconds(), 1),
        "uptime_seconds": round(stat.uptime()) if stat.tob else None,
    } for stat in stats]
    last_success = Success.objects.order_by("-stopped").values_list("stopped", flat=True).first()
    failed = Failure.objects.filter(stopped__gte=now - FAILURE_WINDOW)
    recent_failures = [{"name": f.name, "func": f.func, "stopped": f.stopped.isoformat(), "error": str(f.result)[:300]}
                       for f in failed.order_by("-stopped")[:5]]
    schedules = [{
        "name": s.name, "func": s.func, "minutes": s.minutes, "next_run": s.next_run.isoformat() if s.next_run else None,
        "next_run_in_seconds": round((s.next_run - now).total_seconds()) if s.next_run else None,
    } for s in Schedule.objects.filter(name__startswith=PREFIX).order_by("name")]
    return {
        "clusters": clusters,
        "last_task_finished": last_success.isoformat() if last_success else None,
        "queue_error": broker_error,
        "queued_tasks": queued,
        "tasks_in_progress": in_progress,
        "failed_tasks_24h": failed.count(),
        "recent_failures": recent_failures,
        "schedules": schedules,
    }


def status_report(*, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    return {"at": now.isoformat(), "scheduler": scheduler_status(now=now), "campaigns": campaigns_status(now=now)}
