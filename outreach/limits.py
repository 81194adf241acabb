"""Limits on sending (SPEC §4, §8): the campaign's daily quota; each mailbox's cap (with its
warm-up), its gap between sends and its send window; and the day-by-day counts behind them.

Reading these helps choose; what holds under concurrency is the claim (outreach.sending), which
checks them again in one transaction with the campaign's and the mailbox's rows locked.
"""

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from campaigns.models import Campaign
from leads.models import Lead
from leads.services import FINAL_STATUSES, SENDING_PREFIX
from outreach.models import WEEKDAYS, Mailbox, OutreachAttempt

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


# --- mailboxes -------------------------------------------------------------------------------------

# Why a due lead's mail waits for its mailbox (SPEC §8): the mailbox switched off or unreachable,
# its cap for today reached, before the gap since its last send, or outside the send window in
# the lead's time zone.
WAIT_MAILBOX = "mailbox_off"
WAIT_CAP = "mailbox_cap"
WAIT_GAP = "gap"
WAIT_WINDOW = "window"
WAITS = (WAIT_WINDOW, WAIT_GAP, WAIT_CAP, WAIT_MAILBOX)
WAIT_WORDS = {
    WAIT_WINDOW: "outside the send window", WAIT_GAP: "for the gap between a mailbox's sends",
    WAIT_CAP: "for a mailbox's daily cap", WAIT_MAILBOX: "for a mailbox that is off or unreachable",
}


def _local_day(zone: ZoneInfo, now: datetime) -> tuple[date, datetime, datetime]:
    """The day containing `now` in `zone`, and its [start, end) as instants (a DST day has 23
    or 25 hours)."""
    day = now.astimezone(zone).date()
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return day, start, end


def mailbox_warmup_day(*, mailbox: Mailbox, now: datetime) -> int | None:
    """Which day of its warm-up the mailbox is on (1 on its first day); None without warm-up
    or once the ramp has reached the cap."""
    if not mailbox.warmup_start or mailbox.warmup_start >= mailbox.daily_cap:
        return None
    day = _local_day(ZoneInfo(mailbox.timezone), now)[0]
    number = max((day - mailbox.warmup_started_on).days, 0) + 1
    if mailbox.warmup_start + mailbox.warmup_step * (number - 1) >= mailbox.daily_cap:
        return None
    return number


def mailbox_cap_today(*, mailbox: Mailbox, now: datetime) -> int:
    """The daily cap, ramped by warm-up: `warmup_start` on day 1, `warmup_step` more each day,
    never above `daily_cap`."""
    number = mailbox_warmup_day(mailbox=mailbox, now=now)
    if number is None:
        return mailbox.daily_cap
    return min(mailbox.warmup_start + mailbox.warmup_step * (number - 1), mailbox.daily_cap)


def mailbox_sent_today(*, mailbox: Mailbox, now: datetime) -> int:
    """Sends through the mailbox in its own day, every campaign together (claimed, sent or
    unknown: mail that left or may have left)."""
    _, start, end = _local_day(ZoneInfo(mailbox.timezone), now)
    return OutreachAttempt.objects.filter(
        mailbox=mailbox, created_at__gte=start, created_at__lt=end, status__in=OutreachAttempt.QUOTA_STATUSES
    ).count()


def mailbox_room(*, mailbox: Mailbox, now: datetime) -> int:
    return max(mailbox_cap_today(mailbox=mailbox, now=now) - mailbox_sent_today(mailbox=mailbox, now=now), 0)


def mailbox_wait(*, mailbox: Mailbox, room: int, at: datetime, zone: ZoneInfo) -> str | None:
    """Why the mailbox may not send a lead's mail at `at` (one of WAITS), or None: it is off, it
    has no `room` left today, its gap since the last send has not passed (`next_send_at`), or
    `at` is outside its window in the lead's `zone`. The claim asks it under the mailbox's row
    lock; a run asks it of what it knows, to choose."""
    if not mailbox.active:
        return WAIT_MAILBOX
    if room <= 0:
        return WAIT_CAP
    if mailbox.next_send_at and mailbox.next_send_at > at:
        return WAIT_GAP
    if not window_open(mailbox=mailbox, at=at, zone=zone):
        return WAIT_WINDOW
    return None


def mailbox_next_gap(*, mailbox: Mailbox, now: datetime) -> datetime:
    """When the send after one claimed `now` may be claimed: the gap plus a random jitter, so
    the sends do not tick like a machine."""
    jitter = random.randint(0, mailbox.gap_jitter_seconds) if mailbox.gap_jitter_seconds else 0
    return now + timedelta(seconds=mailbox.min_gap_seconds + jitter)


def send_zone(*, lead: Lead, campaign: Campaign, mailbox: Mailbox) -> ZoneInfo:
    """The time zone a send window is read in: the lead's, else the campaign's, else the mailbox's."""
    return ZoneInfo(lead.timezone or campaign.timezone or mailbox.timezone)


def window_open(*, mailbox: Mailbox, at: datetime, zone: ZoneInfo) -> bool:
    """Whether `at` falls in the mailbox's window, read as wall-clock hours in `zone`.

    A window whose end is before its start crosses midnight: it belongs to the day it starts on
    (Friday 22:00–06:00 includes Saturday 03:00, not Sunday 03:00). Start equal to end: all day.
    """
    local = at.astimezone(zone)
    clock, start, end = local.time(), mailbox.window_start, mailbox.window_end
    days = set(mailbox.window_days or [])
    if start == end:
        return local.weekday() in days
    if start < end:
        return local.weekday() in days and start <= clock < end
    if clock >= start:
        return local.weekday() in days
    return clock < end and (local.weekday() - 1) % 7 in days


def window_next_open(*, mailbox: Mailbox, at: datetime, zone: ZoneInfo) -> datetime | None:
    """The next instant at or after `at` when the window is open (to the minute), or None if it
    never opens (no weekday)."""
    if window_open(mailbox=mailbox, at=at, zone=zone):
        return at
    local = at.astimezone(zone)
    for offset in range(0, 8):
        day = local.date() + timedelta(days=offset)
        opening = datetime.combine(day, mailbox.window_start, tzinfo=zone)
        # A wall-clock time skipped by a DST change opens at the first minute after it.
        opening = opening.astimezone(dt_timezone.utc).astimezone(zone)
        if opening >= local and window_open(mailbox=mailbox, at=opening, zone=zone):
            return opening
    return None


def window_text(mailbox: Mailbox) -> str:
    """The window in words: "Monday–Friday 09:00–17:00 (Europe/Paris)"."""
    days = sorted(set(mailbox.window_days or []))
    if days == list(range(7)):
        named = "every day"
    elif days and days == list(range(days[0], days[-1] + 1)) and len(days) > 2:
        named = f"{WEEKDAYS[days[0]]}–{WEEKDAYS[days[-1]]}"
    else:
        named = ", ".join(WEEKDAYS[d] for d in days) or "no day"
    hours = ("all day" if mailbox.window_start == mailbox.window_end
             else f"{mailbox.window_start:%H:%M}–{mailbox.window_end:%H:%M}")
    return f"{named} {hours}"


@dataclass(frozen=True)
class MailboxToday:
    """A mailbox's day for the console, the API and cam_status."""

    sent: int
    cap: int
    warmup_day: int | None

    @property
    def room(self) -> int:
        return max(self.cap - self.sent, 0)


def mailbox_today(*, mailbox: Mailbox, now: datetime) -> MailboxToday:
    return MailboxToday(sent=mailbox_sent_today(mailbox=mailbox, now=now), cap=mailbox_cap_today(mailbox=mailbox, now=now),
                        warmup_day=mailbox_warmup_day(mailbox=mailbox, now=now))


# --- bounce protection and one conversation per person --------------------------------------------


def bounce_protection_reason(*, campaign: Campaign) -> str | None:
    """Why the campaign must pause itself for its bounces, or None (SPEC §8): more than
    CAM_BOUNCE_PAUSE_RATE of its last CAM_BOUNCE_WINDOW sends bounced hard. Sends before staff
    last resumed it are not counted: resuming starts a new window."""
    window, rate = settings.CAM_BOUNCE_WINDOW, settings.CAM_BOUNCE_PAUSE_RATE
    sends = OutreachAttempt.objects.filter(campaign=campaign).filter(
        Q(status__in=(Status.SENT, Status.UNKNOWN)) | Q(bounced_at__isnull=False)
    )
    if campaign.resumed_at:
        sends = sends.filter(created_at__gte=campaign.resumed_at)
    recent = list(sends.order_by("-created_at", "-id").values_list("bounced_at", flat=True)[:window])
    bounced = sum(1 for at in recent if at is not None)
    if bounced > rate * window:
        return (f"bounce protection: {bounced} of the last {len(recent)} sends bounced "
                f"(more than {rate:.0%} of {window}); check the list's quality, then resume")
    return None


def _in_sequence():
    """Leads whose sequence is under way: contacted and due a follow-up, or a first email being sent."""
    in_flight = Q(stopped_reason__startswith=SENDING_PREFIX)
    return (Lead.objects.exclude(status__in=FINAL_STATUSES)
            .filter((Q(attempt_count__gt=0) & Q(next_action_at__isnull=False)) | in_flight))


def conversation_elsewhere(*, lead: Lead) -> Lead | None:
    """Another campaign's lead with the same address whose sequence is under way: one person
    gets one conversation (SPEC §8)."""
    return (_in_sequence().filter(email=lead.email).exclude(pk=lead.pk)
            .select_related("campaign").order_by("pk").first())


def addresses_in_other_sequences(*, campaign: Campaign, emails: list[str]) -> set[str]:
    """Which of `emails` are in another campaign's sequence now, in one query."""
    return set(_in_sequence().filter(email__in=emails).exclude(campaign=campaign).values_list("email", flat=True))
