"""Campaign services: pause and resume, metrics, and the targets that auto-pause a campaign."""

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q

from campaigns.models import Campaign
from leads.models import Lead

logger = logging.getLogger(__name__)
Status = Lead.Status
# Auto-pause for a high lost rate only once this many leads were contacted.
LOST_RATE_MIN_CONTACTED = 10
LOST_RATE_LIMIT = 0.5
NO_RESULT_AGE = timedelta(days=90)
# After staff resume a campaign, the failing rules (lost rate, age) wait this long before they
# may pause it again; a met goal pauses it at once (raise the target to go on).
RESUME_GRACE = timedelta(days=7)


class Refused(Exception):
    """A staff action the rules do not allow now (resume a campaign whose goal is met, resume a
    suppressed lead, resolve a send still in progress); the message says why and what to do."""


# Fields staff may set when creating or editing a campaign (the API and the console). `live`
# makes scheduled cycles send real email (SPEC §7): it needs change_campaign, which editing does.
EDITABLE_FIELDS = (
    "name", "description", "target_niche", "service_key", "target_clients", "target_mrr", "channels_enabled",
    "max_emails_per_day", "sender_name", "sender_email", "qualification_threshold", "max_attempts_per_lead",
    "postal_address", "live", "apollo_credits_per_day", "dropcontact_credits_per_day", "timezone", "lawful_basis",
    "lawful_basis_note", "qualify_on", "stop_company_on_reply",
)


def postal_address(campaign: Campaign) -> str:
    """The address the campaign's emails carry: its own, else CAM_POSTAL_ADDRESS."""
    return (campaign.postal_address or settings.CAM_POSTAL_ADDRESS).strip()


def live_refusal(campaign: Campaign) -> str | None:
    """Why the campaign, as it would be saved, may not be live; None when it may (SPEC §7, §8)."""
    if campaign.live and not postal_address(campaign):
        return ("a live campaign needs a postal address for the footer of its emails (the law asks for one): "
                "set the campaign's postal_address or CAM_POSTAL_ADDRESS")
    return None


def campaign_create(*, data: dict, now: datetime) -> Campaign:
    """A new, active campaign from validated `data` (EDITABLE_FIELDS, and `mailboxes`: those it
    sends through); Refused when it asks to be live and may not."""
    campaign = Campaign(**{name: data[name] for name in EDITABLE_FIELDS if name in data}, created_at=now)
    if reason := live_refusal(campaign):
        raise Refused(reason)
    campaign.live_since = now if campaign.live else None
    campaign.save()
    if data.get("mailboxes") is not None:
        campaign.mailboxes.set(data["mailboxes"])
    return campaign


@transaction.atomic
def campaign_update(*, campaign: Campaign, data: dict, now: datetime) -> Campaign:
    """Apply validated changes to the campaign as it is now (row locked: two edits at once
    cannot together make it live without an address), all or none: Refused when it would be
    live without the means to send lawfully. Pausing and resuming have their own services."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    changed = [name for name in EDITABLE_FIELDS if name in data and getattr(campaign, name) != data[name]]
    was_live = campaign.live
    for name in changed:
        setattr(campaign, name, data[name])
    if reason := live_refusal(campaign):
        raise Refused(reason)
    if campaign.live != was_live:
        campaign.live_since = now if campaign.live else None
        changed.append("live_since")
        logger.info("campaign %s is now %s", campaign.pk, "LIVE" if campaign.live else "dry (not live)")
    if changed:
        campaign.save(update_fields=changed)
    if data.get("mailboxes") is not None:  # the mailboxes it sends through (outreach.Mailbox)
        campaign.mailboxes.set(data["mailboxes"])
    return campaign


@transaction.atomic
def campaign_pause(*, campaign: Campaign, reason: str, now: datetime) -> Campaign:
    """Stop all cycles of the campaign until it is resumed; the reason is kept for staff.
    Pausing a paused campaign keeps its first reason (e.g. "goal met")."""
    if not campaign.active:
        return campaign
    campaign.active = False
    campaign.paused_at = now
    campaign.pause_reason = reason[:300]
    campaign.save(update_fields=["active", "paused_at", "pause_reason"])
    return campaign


@transaction.atomic
def campaign_archive(*, campaign: Campaign, now: datetime) -> Campaign:
    """Put a finished campaign away: paused (reason "archived"), hidden from the dashboard's
    default view, no cycle runs it; its leads, sends and runs are kept. Idempotent."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.archived_at is None:
        campaign.archived_at = now
        if campaign.active:
            campaign.active, campaign.paused_at, campaign.pause_reason = False, now, "archived"
        campaign.save(update_fields=["archived_at", "active", "paused_at", "pause_reason"])
    return campaign


def campaign_unarchive(*, campaign: Campaign) -> Campaign:
    """Back on the dashboard, still paused: staff resume it when they mean it to run."""
    Campaign.objects.filter(pk=campaign.pk).update(archived_at=None)
    campaign.archived_at = None
    return campaign


@transaction.atomic
def campaign_resume(*, campaign: Campaign, now: datetime) -> Campaign:
    """Staff resuming a paused campaign overrule the failing-campaign rules for RESUME_GRACE;
    resuming an active campaign changes nothing. A campaign whose goal is met is refused
    (Refused): the next cycle would pause it again at once; raise the target to go on."""
    if campaign.active:
        return campaign
    if campaign.archived_at is not None:
        raise Refused("the campaign is archived: unarchive it first")
    metrics = campaign_metrics(campaign=campaign)
    if metrics.qualified_leads >= campaign.target_clients:
        raise Refused(f"the goal is met ({metrics.qualified_leads} qualified of {campaign.target_clients} wanted): "
                      "raise the target (target_clients) to go on")
    campaign.active = True
    campaign.paused_at = None
    campaign.pause_reason = ""
    campaign.resumed_at = now
    campaign.save(update_fields=["active", "paused_at", "pause_reason", "resumed_at"])
    return campaign


@dataclass(frozen=True)
class CampaignMetrics:
    total_leads: int
    new_leads: int
    enriched_leads: int
    contacted_leads: int
    replied_leads: int
    qualified_leads: int
    lost_leads: int
    ever_contacted: int
    conversion_rate: float
    goal_progress: float

    def as_dict(self) -> dict:
        return asdict(self)


def metrics_aggregates(prefix: str = "") -> dict:
    """The Count() aggregates behind CampaignMetrics, for Lead rows or (prefix "leads__") campaigns."""
    counts = {f"{status.lower()}_leads": Count(f"{prefix}id", filter=Q(**{f"{prefix}status": status})) for status in Status}
    counts["total_leads"] = Count(f"{prefix}id")
    counts["ever_contacted"] = Count(f"{prefix}id", filter=Q(**{f"{prefix}first_contacted_at__isnull": False}))
    return counts


def metrics_from_counts(counts: dict, target_clients: int) -> CampaignMetrics:
    total, qualified = counts["total_leads"], counts["qualified_leads"]
    return CampaignMetrics(
        **counts,
        conversion_rate=round(qualified / total, 4) if total else 0.0,
        goal_progress=round(qualified / target_clients, 4) if target_clients else 0.0,
    )


def campaigns_with_metrics(campaigns=None) -> list[Campaign]:
    """The campaigns (all by default), each with its `.metrics`, in one aggregate query."""
    annotated = list((campaigns if campaigns is not None else Campaign.objects.all()).annotate(
        **metrics_aggregates("leads__")
    ))
    names = tuple(metrics_aggregates())
    for campaign in annotated:
        counts = {name: getattr(campaign, name) for name in names}
        campaign.metrics = metrics_from_counts(counts, campaign.target_clients)
    return annotated


def campaign_metrics(*, campaign: Campaign) -> CampaignMetrics:
    """Totals per status in one aggregate query; conversion = qualified / total leads,
    goal progress = qualified / target_clients."""
    counts = Lead.objects.filter(campaign=campaign).aggregate(**metrics_aggregates())
    return metrics_from_counts(counts, campaign.target_clients)


def campaign_pause_reason(*, campaign: Campaign, metrics: CampaignMetrics, now: datetime) -> str | None:
    """Why the campaign should pause itself, or None.

    The goal is met (qualified ≥ target_clients); or more than half of the contacted leads are
    lost, once at least 10 were contacted; or it is 90+ days old with no qualified lead. The
    last two wait RESUME_GRACE after staff resumed the campaign.
    """
    if metrics.qualified_leads >= campaign.target_clients:
        return f"goal met: {metrics.qualified_leads} qualified of {campaign.target_clients} wanted"
    if campaign.resumed_at and now - campaign.resumed_at < RESUME_GRACE:
        return None
    contacted = metrics.ever_contacted
    if contacted >= LOST_RATE_MIN_CONTACTED and metrics.lost_leads > LOST_RATE_LIMIT * contacted:
        return f"failing: {metrics.lost_leads} of {contacted} contacted leads lost (over {LOST_RATE_LIMIT:.0%})"
    age = now - campaign.created_at
    if age >= NO_RESULT_AGE and metrics.qualified_leads == 0:
        return f"failing: {age.days} days old with no qualified lead"
    return None
