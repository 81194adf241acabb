"""Erasing a person (GDPR, SPEC §8): everything CAM holds about an address goes, except the one
thing that keeps the erasure true, a suppression entry, so no source ever imports them again.

What goes: every lead with the address, in every campaign, with its history (events); the
personal fields of their attempts (subject and body, which carry the name and company, and the
error, which may quote the address); the mail they sent back (replies, bounces, ESP events); the
address in the import reports and in the runs' dry-run previews. What stays: the attempts themselves, without a lead (status, step, campaign, mailbox,
when, and the Message-ID CAM made up, which names the sender's domain, not the person), because
today's quota and each mailbox's cap are counted from them, and deleting them would let more mail
go out today than the limits allow.
"""

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast

from campaigns.models import CycleRun
from leads.importing import source_origin
from leads.models import ImportJob, Lead, LeadEvent, LeadSource
from leads.rows import email_normalise
from leads.services import Actor
from outreach.models import InboundMessage, OutreachAttempt, Suppression


@dataclass
class ErasureReport:
    email: str
    leads_deleted: int = 0
    campaigns: list[str] = field(default_factory=list)
    events_deleted: int = 0
    attempts_scrubbed: int = 0
    import_reports_scrubbed: int = 0
    runs_scrubbed: int = 0
    inbound_deleted: int = 0
    suppression: str = ""  # "added", or the reason it was already suppressed for
    # CSV files a source reads that may still hold the address: CAM never imports it again (it is
    # suppressed), but the file is the operator's to clean.
    source_files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@transaction.atomic
def erasure_run(*, email: str, now: datetime, actor: Actor) -> ErasureReport:
    """Erase the person with this address everywhere and keep only their suppression entry;
    idempotent (a second erasure finds nothing more and says so)."""
    email = email_normalise(email)
    report = ErasureReport(email=email)
    leads = Lead.objects.select_for_update(of=("self",)).filter(email=email).select_related("campaign", "source")
    found = list(leads)
    report.campaigns = sorted({lead.campaign.name for lead in found})
    report.source_files = sorted({
        source_origin(lead.source) for lead in found if lead.source is not None and lead.source.kind == LeadSource.Kind.CSV
    })
    report.attempts_scrubbed = OutreachAttempt.objects.filter(lead__in=found).update(subject="", body="", error="")
    # What they wrote back, their bounces, and the ESP's events about them.
    report.inbound_deleted = InboundMessage.objects.filter(
        Q(lead__in=found) | Q(from_email=email) | Q(bounce_recipient=email)).delete()[0]
    report.events_deleted = LeadEvent.objects.filter(lead__in=found).count()
    report.leads_deleted = len(found)
    Lead.objects.filter(pk__in=[lead.pk for lead in found]).delete()  # attempts stay: SET_NULL
    report.import_reports_scrubbed = _scrub_import_reports(email)
    report.runs_scrubbed = _scrub_run_previews(email)
    suppression, created = Suppression.objects.get_or_create(
        email=email, defaults={"reason": Suppression.Reason.MANUAL, "created_at": now,
                               "note": f"erased (GDPR) on {now:%Y-%m-%d} by {actor.label}"[:300]},
    )
    report.suppression = "added" if created else f"already suppressed ({suppression.reason})"
    return report


def _mentions(queryset, column: str, email: str):
    return queryset.annotate(text=Cast(column, TextField())).filter(text__icontains=email)


def _scrub_import_reports(email: str) -> int:
    """Rows of import reports that name the address lose it (their line numbers and reasons stay)."""
    scrubbed = 0
    for job in _mentions(ImportJob.objects.exclude(report=None), "report", email):
        report = job.report
        for key in ("duplicate_rows", "rejected_rows", "cut_rows"):
            for row in report.get(key) or []:
                if isinstance(row, dict) and str(row.get("email", "")).strip().lower() == email:
                    row["email"] = "(erased)"
        if email in json.dumps(report).lower():  # anywhere else (a reason quoting it): the whole report
            report = {k: v for k, v in report.items() if not k.endswith("_rows")}
        ImportJob.objects.filter(pk=job.pk).update(report=report)
        scrubbed += 1
    return scrubbed


def _scrub_run_previews(email: str) -> int:
    """Runs' dry-run previews that named the address lose that entry."""
    scrubbed = 0
    for run in _mentions(CycleRun.objects.exclude(result=None), "result", email):
        result = run.result
        result["previews"] = [p for p in result.get("previews") or []
                              if str(p.get("email", "")).strip().lower() != email]
        if email in json.dumps(result).lower():  # a note or an error quoting it
            for key in ("notes", "errors"):
                result[key] = [line for line in result.get(key) or [] if email not in str(line).lower()]
        CycleRun.objects.filter(pk=run.pk).update(result=result)
        scrubbed += 1
    return scrubbed
