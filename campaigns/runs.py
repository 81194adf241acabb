"""Running a campaign's cycle for real (SPEC §7): one at a time per campaign, recorded.

Every caller (the scheduler, `run_cam_cycle`, the API, the console) goes through cycle_start():
it takes the campaign's lease, records a CycleRun, runs the cycle and releases the lease. A
second caller while the lease is held gets a result marked `already_running` at once.

The lease is a row per campaign taken by one conditional UPDATE, and its times are the
database's clock, so machines whose clocks differ still agree on when it expires. A holder
renews it before each phase; one that was killed leaves it to expire (CAM_CYCLE_LEASE_SECONDS),
after which the next cycle takes it over. Sends stay at most once even past that: the claim in
the database (outreach.sending) is what guards each send, the lease only keeps cycles single.
"""

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import OuterRef, Q, Subquery
from django.db.models.functions import Now
from django.utils import timezone

from campaigns.cycle import CycleResult, cycle_run
from campaigns.models import Campaign, CycleLease, CycleRun
from outreach.sending import CycleStop

logger = logging.getLogger(__name__)
Trigger = CycleRun.Trigger
# Preview bodies stay out of the history: a run keeps who would get which step.
_KEPT_PREVIEWS = 20


def lease_holder_name() -> str:
    """Unique per cycle, and says where it runs: host:pid:random."""
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _expiry():
    return Now() + timedelta(seconds=settings.CAM_CYCLE_LEASE_SECONDS)


def lease_take(*, campaign_id: int, holder: str) -> bool:
    """Take the campaign's lease if it is free or expired; False when someone else holds it."""
    CycleLease.objects.bulk_create([CycleLease(campaign_id=campaign_id)], ignore_conflicts=True)
    taken = (
        CycleLease.objects.filter(campaign_id=campaign_id)
        .filter(Q(holder="") | Q(expires_at__isnull=True) | Q(expires_at__lt=Now()))
        .update(holder=holder, taken_at=Now(), expires_at=_expiry())
    )
    return taken == 1


def lease_renew(*, campaign_id: int, holder: str) -> bool:
    """Push the expiry on while `holder` still holds the lease; False once another took it over."""
    return CycleLease.objects.filter(campaign_id=campaign_id, holder=holder).update(expires_at=_expiry()) == 1


def lease_release(*, campaign_id: int, holder: str) -> None:
    """Free the lease if `holder` still has it (one taken over is the new holder's)."""
    CycleLease.objects.filter(campaign_id=campaign_id, holder=holder).update(holder="", expires_at=None)


def leases_held():
    """The leases of cycles running now (held and not expired)."""
    return CycleLease.objects.exclude(holder="").filter(expires_at__gte=Now())


def cycle_start(
    *,
    campaign: Campaign,
    trigger: str,
    dry_run: bool | None,
    user=None,
    now: datetime | None = None,
    send_only: bool = False,
    **limits,
) -> CycleResult:
    """Run the campaign's cycle under its lease and record it. `dry_run=None` follows the
    campaign's live switch (scheduled cycles), read once the lease is held. `send_only` (the
    send task, every minute): only the mail that has become allowed, and its record is kept
    only if something was sent or went wrong (a record a minute would bury the history)."""
    holder = lease_holder_name()
    # A send run takes no lease: a cycle starting meanwhile must not wait fifteen minutes for
    # its next slot, and what keeps sends single is the claim. It gives way to a running cycle.
    if send_only and leases_held().filter(campaign_id=campaign.pk).exists():
        return _already_running(campaign, dry_run)
    if not send_only and not lease_take(campaign_id=campaign.pk, holder=holder):
        return _already_running(campaign, dry_run)
    try:
        try:
            campaign.refresh_from_db()  # paused, or switched off live, while this one waited
        except Campaign.DoesNotExist:
            result = CycleResult(campaign_id=campaign.pk, campaign_name=campaign.name, dry_run=dry_run is not False)
            result.notes.append("campaign deleted: nothing done")
            return result
        if campaign.archived_at is not None:
            result = CycleResult(campaign_id=campaign.pk, campaign_name=campaign.name, dry_run=dry_run is not False)
            result.notes.append("campaign archived: nothing done (unarchive it to run it)")
            return result
        follow_live = dry_run is None
        if follow_live:
            dry_run = not campaign.live
        started = timezone.now()
        run = CycleRun.objects.create(
            campaign=campaign, trigger=trigger, dry_run=dry_run, holder=holder, started_at=started,
            requested_by=user if user is not None and user.is_authenticated else None,
        )
        try:
            result = cycle_run(
                campaign=campaign, now=now or started, dry_run=dry_run,
                stop_check=_stop_check(campaign.pk, None if send_only else holder,
                                       follow_live=follow_live and not dry_run),
                send_only=send_only, **limits,
            )
        except Exception as exc:  # cycle_run reports its phases' errors; this is a bug, kept in the run
            logger.exception("cycle failed for campaign %s", campaign.pk)
            result = CycleResult(campaign_id=campaign.pk, campaign_name=campaign.name, dry_run=dry_run)
            result.errors.append(f"cycle: {type(exc).__name__}: {exc}")
            result.stopped_phases.append("cycle")
        result.run_id = run.pk
        _run_finish(run, result)
        if send_only and not (result.outreach_sent or result.outreach_failed or result.outreach_unknown
                              or result.errors or result.campaign_paused):
            run.delete()
            result.run_id = None
        return result
    finally:
        if not send_only:
            lease_release(campaign_id=campaign.pk, holder=holder)


def _stop_check(campaign_id: int, holder: str | None, *, follow_live: bool):
    """What a cycle asks before each phase and each send: is the lease still ours (renewing
    it; a send run holds none), and, for a cycle live because its campaign is, is the campaign
    still live?"""

    def check() -> CycleStop | None:
        if holder is not None and not lease_renew(campaign_id=campaign_id, holder=holder):
            return CycleStop("the campaign's lease expired and another cycle took it over; this one stopped "
                             "(raise CAM_CYCLE_LEASE_SECONDS)", error=True)
        if follow_live and not Campaign.objects.filter(pk=campaign_id, live=True).exists():
            return CycleStop("the campaign was switched off live during the cycle: no more email")
        return None

    return check


def _already_running(campaign: Campaign, dry_run: bool | None) -> CycleResult:
    result = CycleResult(campaign_id=campaign.pk, campaign_name=campaign.name,
                         dry_run=not campaign.live if dry_run is None else dry_run)
    result.already_running = True
    lease = CycleLease.objects.filter(campaign_id=campaign.pk).first()
    where = f" (held by {lease.holder} until {lease.expires_at:%Y-%m-%d %H:%M:%S %Z})" if lease and lease.holder else ""
    result.notes.append(f"already running: another cycle of this campaign holds its lease{where}; nothing done")
    return result


def _run_finish(run: CycleRun, result: CycleResult) -> None:
    kept = result.as_dict()
    kept["previews"] = [{k: v for k, v in p.items() if k != "body"} for p in result.previews[:_KEPT_PREVIEWS]]
    CycleRun.objects.filter(pk=run.pk).update(
        finished_at=timezone.now(), sent=result.outreach_sent, failed=result.outreach_failed,
        unknown=result.outreach_unknown, error_count=len(result.errors), result=kept,
    )


def cycle_start_all(*, trigger: str, dry_run: bool | None, now: datetime | None = None) -> list[CycleResult]:
    """A cycle for every active campaign, one after another; one campaign's failure is its
    result's error. Without `now`, each cycle is dated at its own start (not the first one's)."""
    results = []
    for campaign in Campaign.objects.filter(active=True).order_by("id"):
        results.append(cycle_start(campaign=campaign, trigger=trigger, dry_run=dry_run, now=now))
    return results


def lease_state(lease: CycleLease | None, now: datetime) -> str:
    """"free", or who holds it and until when ("expired" once another may take it over)."""
    if lease is None or not lease.holder:
        return "free"
    if lease.expires_at and lease.expires_at < now:
        return f"expired (was {lease.holder})"
    return f"held by {lease.holder} until {timezone.localtime(lease.expires_at):%H:%M:%S}"


def last_runs(campaign_ids) -> dict[int, CycleRun]:
    """Each campaign's latest run, by campaign id, in two queries whatever their number."""
    latest = CycleRun.objects.filter(campaign=OuterRef("pk")).order_by("-started_at", "-id").values("pk")[:1]
    ids = Campaign.objects.filter(pk__in=campaign_ids).annotate(last=Subquery(latest)).values_list("last", flat=True)
    return {run.campaign_id: run for run in CycleRun.objects.filter(pk__in=[pk for pk in ids if pk])}


def run_state(run: CycleRun, lease: CycleLease | None, now: datetime) -> str:
    """finished, running, or interrupted (never finished and its lease is gone or expired)."""
    if run.finished_at is not None:
        return "finished"
    if lease and lease.holder == run.holder and lease.expires_at and lease.expires_at >= now:
        return "running"
    return "interrupted"
