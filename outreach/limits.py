"""Limits on sending: the campaign's daily quota, and the day-by-day counts behind it."""

from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from campaigns.models import Campaign
from outreach.models import OutreachAttempt

Status = OutreachAttempt.Status


def quota_day(now: datetime) -> tuple[datetime, datetime]:
    """The calendar day (TIME_ZONE) containing `now`, as [start, end)."""
    day = timezone.localdate(now)
    start = timezone.make_aware(datetime.combine(day, datetime.min.time()))
    end = timezone.make_aware(datetime.combine(day + timedelta(days=1), datetime.min.time()))
    return start, end


def quota_used(*, campaign: Campaign, now: datetime) -> int:
    start, end = quota_day(now)
    return OutreachAttempt.objects.filter(
        campaign=campaign, created_at__gte=start, created_at__lt=end, status__in=OutreachAttempt.QUOTA_STATUSES
    ).count()


def quota_remaining(*, campaign: Campaign, now: datetime) -> int:
    return max(campaign.max_emails_per_day - quota_used(campaign=campaign, now=now), 0)


def outreach_today(*, campaign: Campaign, now: datetime) -> dict[str, int]:
    """Today's attempts of the campaign by status, in one query."""
    start, end = quota_day(now)
    counts = OutreachAttempt.objects.filter(campaign=campaign, created_at__gte=start, created_at__lt=end).aggregate(
        total=Count("id"),
        sent=Count("id", filter=Q(status=Status.SENT)),
        failed=Count("id", filter=Q(status=Status.FAILED)),
        skipped=Count("id", filter=Q(status=Status.SKIPPED)),
        claimed=Count("id", filter=Q(status=Status.CLAIMED)),
        unknown=Count("id", filter=Q(status=Status.UNKNOWN)),
        not_sent=Count("id", filter=Q(status=Status.NOT_SENT)),
    )
    return counts


def sends_per_day(*, campaign: Campaign, now: datetime, days: int = 14) -> list[dict]:
    """Sent and failed attempts per calendar day (TIME_ZONE) over the last `days`, oldest first,
    in one query; days without attempts are zeros."""
    start, end = quota_day(now - timedelta(days=days - 1))[0], quota_day(now)[1]
    first = timezone.localdate(start)
    rows = (
        OutreachAttempt.objects.filter(campaign=campaign, created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(sent=Count("id", filter=Q(status=Status.SENT)), failed=Count("id", filter=Q(status=Status.FAILED)))
    )
    by_day = {row["day"]: row for row in rows}
    return [
        {"day": day, "sent": by_day.get(day, {}).get("sent", 0), "failed": by_day.get(day, {}).get("failed", 0)}
        for day in (first + timedelta(days=i) for i in range(days))
    ]
