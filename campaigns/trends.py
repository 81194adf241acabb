"""How a campaign is doing over time (the campaign page's *Trends*): sends, replies, bounces and
qualified leads per day over 30 days, reply and bounce rates per step and per mailbox, and the
lead-data credits spent per qualified lead. A fixed number of aggregate queries, whatever the
campaign's size.

Where the numbers come from:
- sent: attempts SENT (or UNKNOWN: they may well have arrived), by the day they were made;
- replies: the leads' "reply recorded" events (from the inbox reader, a webhook or staff);
- bounces: attempts marked bounced, by the day the bounce was known;
- qualified: the leads' events that made them QUALIFIED;
- a reply or a bounce counts for the step of the email it answers: the attempt an inbound
  message was matched to, else the lead's latest email before the reply.
"""

from datetime import datetime, timedelta

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from campaigns.models import Campaign
from leads.models import ApiUsage, Lead, LeadEvent
from outreach.limits import quota_day
from outreach.models import OutreachAttempt

SENT_STATUSES = (OutreachAttempt.Status.SENT, OutreachAttempt.Status.UNKNOWN)
SERIES = ("sent", "replies", "bounces", "qualified")


def _per_day(queryset, field: str, start, end) -> dict:
    rows = (queryset.filter(**{f"{field}__gte": start, f"{field}__lt": end}).annotate(day=TruncDate(field))
            .values("day").annotate(n=Count("pk")).order_by())
    return {row["day"]: row["n"] for row in rows}


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def campaign_trends(*, campaign: Campaign, now: datetime, days: int = 30) -> dict:
    start, end = quota_day(now - timedelta(days=days - 1))[0], quota_day(now)[1]
    first = timezone.localdate(start)
    attempts = OutreachAttempt.objects.filter(campaign=campaign)
    events = LeadEvent.objects.filter(lead__campaign=campaign)
    counted = {
        "sent": _per_day(attempts.filter(status__in=SENT_STATUSES), "created_at", start, end),
        "replies": _per_day(events.filter(kind=LeadEvent.Kind.REPLIED), "created_at", start, end),
        "bounces": _per_day(attempts.exclude(bounced_at=None), "bounced_at", start, end),
        "qualified": _per_day(events.filter(to_status=Lead.Status.QUALIFIED).exclude(from_status=Lead.Status.QUALIFIED),
                              "created_at", start, end),
    }
    daily = [{"day": day, **{name: counted[name].get(day, 0) for name in SERIES}}
             for day in (first + timedelta(days=i) for i in range(days))]

    sent_by_step = dict(attempts.filter(status__in=SENT_STATUSES).values_list("step").annotate(n=Count("pk")).order_by())
    bounced_by_step = dict(attempts.exclude(bounced_at=None).values_list("step").annotate(n=Count("pk")).order_by())
    replies_by_step = _replies_by_step(campaign)
    steps = [{"step": step, "sent": sent, "replies": replies_by_step.get(step, 0), "bounces": bounced_by_step.get(step, 0),
              "reply_rate": _rate(replies_by_step.get(step, 0), sent), "bounce_rate": _rate(bounced_by_step.get(step, 0), sent)}
             for step, sent in sorted(sent_by_step.items())]

    # Per mailbox: a thread stays on the mailbox that started it, so its reply rate is the
    # replied leads among those it sent a first email to.
    mailboxes = [
        {**row, "name": row["name"] or "the environment's server (EMAIL_*)",
         "reply_rate": _rate(row["replies"], row["threads"]), "bounce_rate": _rate(row["bounces"], row["sent"])}
        for row in (attempts.filter(status__in=SENT_STATUSES).values("mailbox_id", name=F("mailbox__name"))
                    .annotate(sent=Count("pk"), threads=Count("pk", filter=Q(step=1)),
                              bounces=Count("pk", filter=Q(bounced_at__isnull=False)),
                              replies=Count("pk", filter=Q(step=1, lead__replied_at__isnull=False)))
                    .order_by("name"))
    ]

    credits = ApiUsage.objects.filter(campaign=campaign).aggregate(total=Sum("credits"))["total"] or 0
    qualified = Lead.objects.filter(campaign=campaign, status=Lead.Status.QUALIFIED).count()
    return {
        "days": daily, "steps": steps, "mailboxes": mailboxes, "credits": credits, "qualified": qualified,
        "credits_per_qualified": round(credits / qualified, 1) if credits and qualified else None,
        "totals": {name: sum(day[name] for day in daily) for name in SERIES},
    }


def _replies_by_step(campaign: Campaign) -> dict[int, int]:
    """Replied leads counted at the step of the email they answered: the latest email sent to
    the lead before its reply (at most one per lead)."""
    replied = Lead.objects.filter(campaign=campaign, replied_at__isnull=False)
    steps = (OutreachAttempt.objects.filter(lead__in=replied, status__in=SENT_STATUSES,
                                            created_at__lte=F("lead__replied_at"))
             .values("lead").annotate(step=Count("pk")).order_by())
    counts: dict[int, int] = {}
    for row in steps:
        counts[row["step"]] = counts.get(row["step"], 0) + 1
    return counts
