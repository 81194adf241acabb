"""CSV uploads imported in the background (README, "HTTP API" and "Operator console").

An upload bigger than CAM_IMPORT_SYNC_MAX_KB is checked, kept under
CAM_IMPORT_DIR/<campaign id>/import-jobs/ and recorded as an ImportJob; a qcluster worker
(leads.tasks.import_job_run) imports it with the same code as a synchronous upload, writing its
progress once per batch and its report at the end.

The queue may deliver a task twice (the ORM broker redelivers one whose worker died), so a run
takes the job with a conditional update: a queued job, or a running one started longer ago than
the task timeout (its worker was killed: no worker outlives CAM_TASK_TIMEOUT_SECONDS). A second
delivery while a run holds the job does nothing. A run taken over re-imports the whole file:
its leads already inserted are found as duplicates, so each address is still one lead.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone
from django_q.tasks import async_task

from campaigns.models import Campaign
from leads.importing import ImportReport, leads_import_csv
from leads.models import ImportJob
from leads.rows import LeadFileError
from leads.sources import import_dir, source_file_path, upload_keep

logger = logging.getLogger(__name__)

Status = ImportJob.Status
JOBS_FOLDER = "import-jobs"
# A job queued longer than this without a worker taking it: probably no qcluster is running.
WAITING_FOR_WORKER_AFTER = timedelta(seconds=30)
WAITING_FOR_WORKER = "waiting for a worker — is `python manage.py qcluster` running?"
_ERROR_MAX = 2000


def import_in_background(size: int) -> bool:
    """An upload of `size` bytes is imported in the background (above CAM_IMPORT_SYNC_MAX_KB)."""
    return size > settings.CAM_IMPORT_SYNC_MAX_KB * 1024


def import_job_queue(*, campaign: Campaign, file, name: str, now: datetime, user=None) -> ImportJob:
    """Keep an uploaded CSV file and queue its import. The file is checked first as an import
    checks it, so one that is not CSV text or has no email column is refused at once
    (LeadFileError) and nothing is kept; the task is queued once the job is committed."""
    relative = upload_keep(campaign=campaign, file=file, name=name, now=now, folder=JOBS_FOLDER)
    try:
        job = ImportJob.objects.create(
            campaign=campaign, path=str(relative), file_name=name[:255], created_at=now,
            requested_by=user if user is not None and user.is_authenticated else None,
        )
    except BaseException:
        (import_dir() / relative).unlink(missing_ok=True)
        raise
    transaction.on_commit(lambda: async_task(
        "leads.tasks.import_job_run", job.pk, task_name=f"import {job.pk} into campaign {campaign.pk}",
        group="cam-imports",
    ))
    return job


def import_job_claim(*, job_id: int) -> ImportJob | None:
    """Take the job for this run: queued, or running but started before the task timeout
    (its worker died). None when another run holds it, it is finished, or it is gone."""
    stale = Now() - timedelta(seconds=settings.CAM_TASK_TIMEOUT_SECONDS)
    taken = (
        ImportJob.objects.filter(pk=job_id)
        .filter(Q(status=Status.QUEUED) | Q(status=Status.RUNNING, started_at__lt=stale))
        .update(status=Status.RUNNING, started_at=Now(), attempts=F("attempts") + 1,
                rows_read=0, imported=0, duplicates=0, rejected=0, error="")
    )
    if not taken:
        return None
    return ImportJob.objects.select_related("campaign").get(pk=job_id)


def _counters(report: ImportReport) -> dict:
    return {"rows_read": report.rows_read, "imported": report.imported,
            "duplicates": len(report.duplicates), "rejected": len(report.rejected)}


def import_job_execute(*, job_id: int) -> dict:
    """Run the import of one job, if this run can take it (import_job_claim). Progress is
    written once per batch, the report once done; every write is conditional on this run still
    holding the job. A file that cannot be read, or a crash, fails the job with the reason.
    The kept file is removed once the job is done. Returns a short summary for the task."""
    job = import_job_claim(job_id=job_id)
    if job is None:
        return {"import_id": job_id, "note": "already running, finished or deleted: nothing done"}
    held = ImportJob.objects.filter(pk=job.pk, status=Status.RUNNING, attempts=job.attempts)

    def progress(report: ImportReport) -> None:
        held.update(**_counters(report))

    try:
        by = f" by {job.requested_by}" if job.requested_by_id else ""
        report = leads_import_csv(campaign=job.campaign, path=source_file_path(job.path), now=timezone.now(),
                                  progress=progress, origin=f"upload of {job.file_name}{by}")
    except LeadFileError as exc:
        error = str(exc)
    except Exception as exc:  # kept on the job for staff, and logged with its traceback
        logger.exception("import %s into campaign %s failed", job.pk, job.campaign_id)
        error = f"{type(exc).__name__}: {exc}"
    else:
        if held.update(status=Status.DONE, finished_at=timezone.now(), report=report.as_dict(), **_counters(report)):
            (import_dir() / job.path).unlink(missing_ok=True)
        return {"import_id": job.pk, "status": Status.DONE, **_counters(report)}
    held.update(status=Status.FAILED, finished_at=timezone.now(), error=error[:_ERROR_MAX])
    return {"import_id": job.pk, "status": Status.FAILED, "error": error[:_ERROR_MAX]}


def import_job_note(job: ImportJob, now: datetime) -> str:
    """What staff should know about the job beyond its status ("" when nothing)."""
    if job.status == Status.QUEUED and now - job.created_at > WAITING_FOR_WORKER_AFTER:
        return WAITING_FOR_WORKER
    if job.status == Status.RUNNING and job.started_at and \
            now - job.started_at > timedelta(seconds=settings.CAM_TASK_TIMEOUT_SECONDS):
        return "its worker stopped: the import starts again when the task is delivered again"
    if job.status in (Status.RUNNING, Status.DONE) and job.attempts > 1:
        return "started again after its worker stopped: leads the stopped run imported count as duplicates"
    return ""


def import_jobs_prune(*, now: datetime) -> int:
    """Delete finished (done or failed) imports older than CAM_RUN_HISTORY_DAYS, with the file a
    failed one kept; queued and running ones stay."""
    old = ImportJob.objects.filter(status__in=[Status.DONE, Status.FAILED],
                                   created_at__lt=now - timedelta(days=settings.CAM_RUN_HISTORY_DAYS))
    for path in old.filter(status=Status.FAILED).values_list("path", flat=True):
        (import_dir() / path).unlink(missing_ok=True)
    deleted, _ = old.delete()
    return deleted
