"""Leads in bulk: insertion (deduplicated against the campaign and the suppression list),
discovery from a campaign's lead sources, and import of CSV files and uploads."""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from campaigns.models import Campaign
from leads.apollo_source import apollo_discover
from leads.models import Lead, LeadSource
from leads.rows import LeadRow, RowProblem, csv_rows
from leads.services import PhaseResult
from leads.sources import csv_source_rows, lead_text, open_lead_file, source_file_version

# Suppression is outreach's table, but no lead may be created for a suppressed address.
from outreach.models import Suppression

logger = logging.getLogger(__name__)

Status = Lead.Status
INSERT_BATCH = 500


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: list[RowProblem] = field(default_factory=list)
    rejected: list[RowProblem] = field(default_factory=list)
    # Imported rows whose extra fields were cut (too many, too long): the reason says what.
    cut_rows: list[RowProblem] = field(default_factory=list)
    # False when the insertion stopped at its limit before the last row.
    complete: bool = True
    # Rows (good or bad) read so far; for progress, not part of the report.
    rows_read: int = 0

    def as_dict(self) -> dict:
        return {
            "imported": self.imported,
            "duplicates": len(self.duplicates),
            "rejected": len(self.rejected),
            "cut": len(self.cut_rows),
            "duplicate_rows": [p.as_dict() for p in self.duplicates],
            "rejected_rows": [p.as_dict() for p in self.rejected],
            "cut_rows": [p.as_dict() for p in self.cut_rows],
        }


def leads_insert(
    *,
    campaign: Campaign,
    rows: Iterable[LeadRow | RowProblem],
    now: datetime,
    source: LeadSource | None = None,
    limit: int | None = None,
    progress: Callable[[ImportReport], None] | None = None,
    origin: str = "",
) -> ImportReport:
    """Insert new leads in batches, deduplicated against the campaign and the suppression list.

    A new lead is NEW and due at once, and records where it came from (`origin`, else its
    source) and when it was collected (GDPR: SPEC §8). Rows are consumed lazily, so a file of any size streams
    through; bad rows are reported with their line numbers and never stop the good ones.
    At most `limit` leads are inserted (the rest are left for a later run).
    `progress(report)` is called after each batch inserted, and after every INSERT_BATCH rows
    read without one (a file of bad rows): a caller recording progress writes once per batch,
    never once per row.
    """
    report = ImportReport()
    origin = (origin or source_origin(source))[:300]
    seen: dict[str, int] = {}
    batch: list[LeadRow] = []
    told = 0  # rows_read when progress was last told
    for row in rows:
        report.rows_read += 1
        inserted = False
        if isinstance(row, RowProblem):
            report.rejected.append(row)
        elif row.email in seen:
            report.duplicates.append(RowProblem(row.line, row.email, f"repeats line {seen[row.email]}"))
        else:
            seen[row.email] = row.line
            batch.append(row)
            if len(batch) >= INSERT_BATCH:
                _insert_batch(campaign, batch, now, source, report, limit, origin)
                batch, inserted = [], True
                if limit is not None and report.imported >= limit:
                    report.complete = False
                    return report
        if progress is not None and (inserted or report.rows_read - told >= INSERT_BATCH):
            progress(report)
            told = report.rows_read
    if batch:
        _insert_batch(campaign, batch, now, source, report, limit, origin)
    return report


def source_origin(source: LeadSource | None) -> str:
    """A lead source in words, for the origin of the leads it found."""
    if source is None:
        return ""
    if source.kind == LeadSource.Kind.CSV:
        path = (source.settings or {}).get("path") if isinstance(source.settings, dict) else None
        return f"CSV source “{source}” ({Path(path).name if isinstance(path, str) and path else '?'})"
    return f"{source.get_kind_display()} (source “{source}”)"


def _insert_batch(campaign, batch, now, source, report, limit, origin) -> None:
    emails = [row.email for row in batch]
    existing = set(Lead.objects.filter(campaign=campaign, email__in=emails).values_list("email", flat=True))
    suppressed = dict(Suppression.objects.filter(email__in=emails).values_list("email", "reason"))
    new = []
    for row in batch:
        if row.email in existing:
            report.duplicates.append(RowProblem(row.line, row.email, "already in this campaign"))
        elif row.email in suppressed:
            report.rejected.append(RowProblem(row.line, row.email, f"suppressed ({suppressed[row.email]})"))
        elif limit is None or report.imported + len(new) < limit:
            new.append(
                Lead(
                    campaign=campaign, source=source, email=row.email, source_data=row.extra,
                    status=Status.NEW, next_action_at=now, created_at=now, origin=origin, collected_at=now,
                    **row.fields,
                )
            )
    # ignore_conflicts: a concurrent insert of the same address is a duplicate, not an error.
    # What this call inserted is told apart by its created_at (`now`), to the microsecond.
    Lead.objects.bulk_create(new, ignore_conflicts=True)
    inserted = set(
        Lead.objects.filter(campaign=campaign, email__in=[lead.email for lead in new], created_at=now)
        .values_list("email", flat=True)
    ) if new else set()
    by_email = {row.email: row for row in batch}
    for lead in new:
        row = by_email[lead.email]
        if lead.email not in inserted:
            report.duplicates.append(RowProblem(row.line, lead.email, "already in this campaign"))
        elif row.cuts:
            report.cut_rows.append(RowProblem(row.line, lead.email, "; ".join(row.cuts), "extra"))
    report.imported += len(inserted)


def leads_import_csv(
    *, campaign: Campaign, path: str | Path, now: datetime, progress: Callable[[ImportReport], None] | None = None,
    origin: str = "",
) -> ImportReport:
    """Import a CSV file of leads into `campaign`; raises LeadFileError if it is unusable.
    `progress` and `origin` as for leads_insert (the origin says the file's name by default)."""
    with open_lead_file(path) as stream:
        return leads_insert(campaign=campaign, rows=csv_rows(stream), now=now, progress=progress,
                            origin=origin or f"import of {Path(path).name}")


def leads_import_upload(*, campaign: Campaign, file: BinaryIO, name: str, now: datetime, by=None) -> ImportReport:
    """Import an uploaded CSV file (binary, seekable) as leads_import_csv does a path."""
    return leads_insert(campaign=campaign, rows=csv_rows(lead_text(file, name)), now=now,
                        origin=f"upload of {name}" + (f" by {by}" if by else ""))


def _problems_note(label: str, problems: list[RowProblem], shown: int = 3) -> str:
    listed = "; ".join(f"line {p.line}: {p.reason}" for p in problems[:shown])
    more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
    rows = "row" if len(problems) == 1 else "rows"
    return f"{label}: {len(problems)} {rows} rejected ({listed}{more})"


def leads_discover(*, campaign: Campaign, now: datetime, limit: int, deadline: float | None = None) -> PhaseResult:
    """Run each active lead source of the campaign (by its kind: a CSV file, or an Apollo search,
    see leads.apollo_source) and insert what is new, `limit` in all. A source that fails is the
    phase's error, with the source's last_error, and the other sources still run."""
    result = PhaseResult()
    for source in campaign.lead_sources.filter(active=True):
        label = f"source {source}"
        discover = _DISCOVER.get(source.kind)
        if discover is None:
            source.last_error = f"unknown kind {source.kind!r}"
            result.errors.append(f"{label}: {source.last_error}")
            source.last_run_at = now
            source.save(update_fields=["last_run_at", "last_error"])
            continue
        discover(source, label, now, max(limit - result.count, 0), deadline, result)
    return result


def _csv_discover(source: LeadSource, label: str, now: datetime, limit: int, deadline: float | None,
                  result: PhaseResult) -> None:
    """The rows of a CSV source's file that are new. Its rejected rows are noted once per version
    of the file (size and modification time), not at every cycle: the version is remembered once
    the whole file was read, and a changed file is reported again."""
    source.last_error = ""
    version = source_file_version(source)
    try:
        report = leads_insert(campaign=source.campaign, rows=csv_source_rows(source), now=now, source=source,
                              limit=limit)
    except Exception as exc:
        logger.exception("lead source %s of campaign %s failed", source.pk, source.campaign_id)
        source.last_error = str(exc)
        result.errors.append(f"{label}: {exc}")
    else:
        result.count += report.imported
        if report.rejected and not (version and version == source.reported_file_version):
            result.notes.append(_problems_note(label, report.rejected))
        if version and report.complete:
            source.reported_file_version = version
    source.last_run_at = now
    source.save(update_fields=["last_run_at", "last_error", "reported_file_version"])


def _apollo_discover(source: LeadSource, label: str, now: datetime, limit: int, deadline: float | None,
                     result: PhaseResult) -> None:
    run = apollo_discover(source=source, now=now, limit=limit, deadline=deadline)
    source.last_error, source.last_run_at = run.error, now
    source.save(update_fields=["last_run_at", "last_error"])
    if run.skipped:
        result.notes.append(f"{label} skipped: {run.skipped}")
        return
    result.count += run.imported
    if run.revealed:
        emailless = f", {run.without_email} without an email (not inserted)" if run.without_email else ""
        result.notes.append(f"{label}: {run.revealed} people revealed for {run.credits} Apollo credits"
                            f"{emailless}, {run.imported} new leads")
    result.notes += [f"{label}: {note}" for note in run.notes]
    if run.rejected:
        result.notes.append(_problems_note(label, run.rejected))
    if run.error:
        result.errors.append(f"{label}: {run.error}")


# Each kind of lead source: what a cycle does with it.
_DISCOVER = {LeadSource.Kind.CSV: _csv_discover, LeadSource.Kind.APOLLO: _apollo_discover}
