"""Credits of the lead-data providers (SPEC §10): every call that costs credits is reserved
against the campaign's daily budget before it is made, then settled with what the provider
answered, as one ApiUsage row per call.

The reservation is taken under the campaign's row lock (SQLite: its write lock), so several
cycles, processes or machines at once never together spend past the budget. A call whose
outcome is unknown (a timeout) keeps its reservation: credits the provider may have charged are
counted as spent, never as free.
"""

from datetime import date, datetime

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from campaigns.models import Campaign
from leads.models import ApiUsage, LeadSource

Provider = ApiUsage.Provider
Outcome = ApiUsage.Outcome
# The campaign field holding each provider's daily budget.
BUDGET_FIELDS = {Provider.APOLLO: "apollo_credits_per_day", Provider.DROPCONTACT: "dropcontact_credits_per_day"}


def credits_day(now: datetime) -> date:
    """The calendar day (TIME_ZONE) whose budget a call at `now` counts against, as the email quota."""
    return timezone.localdate(now)


def credits_budget(campaign: Campaign, provider: str) -> int:
    return getattr(campaign, BUDGET_FIELDS[provider])


def credits_used(*, campaign: Campaign, provider: str, day: date) -> int:
    return ApiUsage.objects.filter(campaign=campaign, provider=provider, day=day).aggregate(
        total=Sum("credits"))["total"] or 0


@transaction.atomic
def credits_reserve(
    *, campaign: Campaign, provider: str, endpoint: str, wanted: int, now: datetime,
    source: LeadSource | None = None, all_or_none: bool = False,
) -> ApiUsage | None:
    """Reserve up to `wanted` credits of today's budget for one call (`usage.credits` says how
    many: the caller asks the provider for no more), or all of them when `all_or_none`. None
    when nothing can be reserved: the budget is used for today."""
    locked = Campaign.objects.select_for_update().only(*BUDGET_FIELDS.values()).get(pk=campaign.pk)
    day = credits_day(now)
    room = credits_budget(locked, provider) - credits_used(campaign=campaign, provider=provider, day=day)
    granted = min(wanted, room)
    if granted <= 0 or (all_or_none and granted < wanted):
        return None
    return ApiUsage.objects.create(
        campaign=campaign, source=source, provider=provider, day=day, endpoint=endpoint, asked=granted,
        credits=granted, created_at=now,
    )


def credits_settle(
    *, usage: ApiUsage, now: datetime, outcome: str, charged: int | None = None, response=None, error: str = ""
) -> None:
    """Record how a reserved call ended: DONE with the credits `charged` (never more than were
    reserved), REFUSED (the provider answered no: nothing charged), or UNKNOWN (no usable
    answer: the reservation stays counted)."""
    if outcome == Outcome.DONE:
        credits = min(usage.credits, max(charged if charged is not None else usage.credits, 0))
    else:
        credits = 0 if outcome == Outcome.REFUSED else usage.credits
    ApiUsage.objects.filter(pk=usage.pk, outcome=Outcome.RESERVED).update(
        outcome=outcome, credits=credits, response=response, error=error[:2000], finished_at=now
    )
    usage.outcome, usage.credits = outcome, credits


def credits_summary(*, campaign: Campaign, now: datetime) -> dict[str, dict[str, int]]:
    """Credits used today and in all, and today's budget, per provider (for the campaign page
    and the API), in one query."""
    day = credits_day(now)
    totals = ApiUsage.objects.filter(campaign=campaign).aggregate(**{
        f"{provider}_{span}": Sum("credits", filter=Q(provider=provider, **({"day": day} if span == "today" else {})))
        for provider in BUDGET_FIELDS for span in ("today", "total")
    })
    return {
        provider: {
            "today": totals[f"{provider}_today"] or 0,
            "total": totals[f"{provider}_total"] or 0,
            "budget_per_day": credits_budget(campaign, provider),
        }
        for provider in BUDGET_FIELDS
    }
