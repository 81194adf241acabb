"""The CAM cycle: discover → enrich → reach out → check targets, for one campaign or all.

A phase that fails is reported in the result's `errors` and the next phase still runs; one
campaign that fails never stops the others. Nothing here raises for a campaign's problem.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError

from campaigns.models import Campaign
from campaigns.services import CampaignMetrics, campaign_metrics, campaign_pause, campaign_pause_reason
from leads.importing import leads_discover
from leads.services import Actor, leads_enrich
from outreach.sending import CycleStop, outreach_send_due

logger = logging.getLogger(__name__)


@dataclass
class CycleResult:
    """The contract's result object (SPEC §5), plus `notes`, `leads_lost`, dry-run `previews`,
    `outreach_unknown` (sends whose outcome is unknown: not counted as failed) and
    `stopped_phases` (phases a mail server or database problem ended early: the command then
    exits non-zero)."""

    campaign_id: int
    campaign_name: str
    dry_run: bool
    leads_discovered: int = 0
    leads_enriched: int = 0
    outreach_sent: int = 0
    outreach_failed: int = 0
    outreach_skipped: int = 0
    campaign_paused: bool = False
    pause_reason: str | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    leads_lost: int = 0
    previews: list[dict] = field(default_factory=list)
    outreach_unknown: int = 0
    # Due leads whose mail waits for a mailbox's window, gap or cap (counted in outreach_skipped).
    outreach_waiting: int = 0
    stopped_phases: list[str] = field(default_factory=list)
    # Set by campaigns.runs: the recorded run, or True when another cycle held the lease.
    run_id: int | None = None
    already_running: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def cycle_run(
    *,
    campaign: Campaign,
    now: datetime,
    dry_run: bool = True,
    max_new_leads: int | None = None,
    max_enriched: int | None = None,
    budget_seconds: float | None = None,
    stop_check: Callable[[], CycleStop | None] | None = None,
    send_only: bool = False,
) -> CycleResult:
    """One cycle of one campaign. A paused campaign is left alone. `send_only` (the send task):
    no discovery or enrichment, only the mail that has become allowed.

    Dry run (the default) discovers and enriches for real but sends nothing and pauses nothing;
    it reports what it would send and whether the campaign would pause. The cycle stops
    starting work after CAM_CYCLE_BUDGET_SECONDS (or `budget_seconds`); what it did not reach
    waits for the next cycle. `stop_check` is asked before each phase and each send
    (campaigns.runs renews the lease there, and checks the live switch); once it gives a
    reason, the cycle stops where it is.
    """
    budget = budget_seconds if budget_seconds is not None else settings.CAM_CYCLE_BUDGET_SECONDS
    deadline = time.monotonic() + budget
    actor = Actor.cycle(campaign)
    result = CycleResult(campaign_id=campaign.pk, campaign_name=campaign.name, dry_run=dry_run)
    if not campaign.active:
        result.campaign_paused = True
        result.pause_reason = campaign.pause_reason or "paused by staff"
        result.notes.append("campaign is paused: nothing done")
        return result

    stopped: CycleStop | None = None
    stop_check = stop_check or (lambda: None)

    def phase(name, run, *, timed=True):
        nonlocal stopped
        if timed and time.monotonic() >= deadline:
            result.notes.append(f"cycle budget of {budget:g} s used up before {name}: it waits for the next cycle")
            return None
        if stopped:
            return None
        if stopped := stop_check():  # reported once; no phase runs after it
            if stopped.error:
                result.errors.append(f"{name}: {stopped.reason}")
                result.stopped_phases.append(name)
            else:
                result.notes.append(stopped.reason)
            return None
        try:
            return run()
        except Exception as exc:
            logger.exception("cycle phase %s failed for campaign %s", name, campaign.pk)
            cause = " (database)" if isinstance(exc, DatabaseError) else ""
            result.errors.append(f"{name}{cause}: {type(exc).__name__}: {exc}")
            result.stopped_phases.append(name)
            return None

    discovered = enriched = None
    if not send_only:
        discovered = phase("discover", lambda: leads_discover(
            campaign=campaign, now=now, limit=max_new_leads or settings.CAM_MAX_NEW_LEADS, deadline=deadline))
        enriched = phase("enrich", lambda: leads_enrich(
            campaign=campaign, now=now, limit=max_enriched or settings.CAM_MAX_ENRICHED, actor=actor,
            deadline=deadline))
    for done in (discovered, enriched):
        if done:
            result.notes += done.notes
            result.errors += done.errors
    result.leads_discovered = discovered.count if discovered else 0
    result.leads_enriched = enriched.count if enriched else 0

    # Targets are checked before outreach too: a goal met already (e.g. leads qualified by
    # staff) or a failing campaign means no more email.
    # If the targets cannot even be computed, no email goes out either.
    metrics = phase("targets", lambda: _check_targets(campaign, now, dry_run, result))
    if metrics is None:
        return result
    outreach = phase("outreach", lambda: outreach_send_due(
        campaign=campaign, now=now, dry_run=dry_run,
        qualified_needed=campaign.target_clients - metrics.qualified_leads, deadline=deadline, actor=actor,
        stop_check=stop_check,
    ))
    if outreach:
        result.outreach_sent = outreach.sent
        result.outreach_failed = outreach.failed
        result.outreach_unknown = outreach.unknown
        if outreach.stopped:
            result.stopped_phases.append("outreach")
        result.outreach_skipped = outreach.skipped
        result.outreach_waiting = outreach.waiting_total
        result.leads_lost = outreach.lost
        result.notes += outreach.notes
        result.errors += outreach.errors
        result.previews = outreach.previews
    if not dry_run:  # after a live run the targets are checked whatever the time
        phase("targets", lambda: _check_targets(campaign, now, dry_run, result), timed=False)
    return result


def _check_targets(campaign: Campaign, now: datetime, dry_run: bool, result: CycleResult) -> CampaignMetrics | None:
    """The campaign's metrics while it should go on; None once it is (or would be) paused."""
    metrics = campaign_metrics(campaign=campaign)
    reason = campaign_pause_reason(campaign=campaign, metrics=metrics, now=now)
    if not reason:
        return metrics
    if dry_run:
        result.notes.append(f"dry run: the campaign would be paused ({reason})")
    else:
        campaign_pause(campaign=campaign, reason=reason, now=now)
        result.campaign_paused = True
        result.pause_reason = reason
    return None
