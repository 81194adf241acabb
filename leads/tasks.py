"""Background work of the leads app: django-q2 tasks (`python manage.py qcluster` runs them).

As in campaigns/tasks.py, tasks take ids and read everything again when they run, and running
one twice is harmless: the job's conditional claim lets one run import a file at a time.
"""

from leads.import_jobs import import_job_execute


def import_job_run(job_id: int) -> dict:
    """Import the CSV file of one ImportJob (leads.import_jobs). A second delivery while it
    runs, or once it is finished, does nothing."""
    return import_job_execute(job_id=job_id)
