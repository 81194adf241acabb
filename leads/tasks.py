"""Background work of the leads app: django-q2 tasks (`python manage.py qcluster` runs them).

As in campaigns/tasks.py, tasks take ids and read everything again when they run, and running
one twice is harmless: the job's conditional claim lets one run import a file at a time.
"""

from django.utils import timezone

from leads.import_jobs import import_job_execute, import_jobs_prune


def import_job_run(job_id: int) -> dict:
    """Import the CSV file of one ImportJob (leads.import_jobs). A second delivery while it
    runs, or once it is finished, does nothing."""
    return import_job_execute(job_id=job_id)


def import_jobs_old_prune() -> int:
    """Daily: finished imports older than CAM_RUN_HISTORY_DAYS go, with their kept files."""
    return import_jobs_prune(now=timezone.now())
