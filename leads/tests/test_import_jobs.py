"""CSV uploads above CAM_IMPORT_SYNC_MAX_KB are imported in the background (leads.import_jobs):
202 with the import's id, progress and report at GET /api/cam/imports/N and on the console's
/imports/N, and a task that is harmless when delivered twice or taken over after a crash.

The task is run as a worker runs it: leads.tasks.import_job_run called directly, in a process
killed half-way, and by a real `manage.py qcluster`."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django_q.models import OrmQ, Success

from cam_project.testing import anonymous_client, assert_json_error, superuser, token_client, user_with_perms
from campaigns.tests.factories import CampaignFactory
from leads.import_jobs import WAITING_FOR_WORKER, import_job_claim
from leads.importing import INSERT_BATCH, leads_insert
from leads.models import ImportJob, Lead
from leads.rows import LeadRow, RowProblem
from leads.tasks import import_job_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def threshold(settings):
    """Uploads above 1 KB go to the background."""
    settings.CAM_IMPORT_SYNC_MAX_KB = 1
    return 1024


def leads_file(good: int, *, name: str = "big.csv", prefix: str = "p") -> tuple[SimpleUploadedFile, dict]:
    """A CSV of `good` leads plus, after them, a bad address, a row with too many fields and a
    repeated address; and what its import must report."""
    lines = ["email,first_name,company"]
    lines += [f"{prefix}{i}@bulk{i % 13}.example,Ann{i},Co{i}" for i in range(good)]
    bad_line = len(lines) + 1
    lines.append("not-an-address,Bad,Co")
    extra_line = len(lines) + 1
    lines.append(f"{prefix}x@bulk.example,Too,Many,Fields")
    repeat_line = len(lines) + 1
    lines.append(f"{prefix}0@bulk0.example,Again,Co")
    data = ("\n".join(lines) + "\n").encode()
    expected = {"imported": good, "bad_line": bad_line, "extra_line": extra_line, "repeat_line": repeat_line,
                "rows": good + 3}
    return SimpleUploadedFile(name, data, content_type="text/csv"), expected


def upload(api, campaign, file):
    return api.post(f"/api/cam/campaigns/{campaign.pk}/leads", {"file": file}, format="multipart")


def kept_files(root) -> list[Path]:
    return sorted(Path(root).rglob("*.csv"))


# --- the upload ------------------------------------------------------------------------------------


def test_an_upload_above_the_threshold_answers_202_with_the_import_and_keeps_the_file(api, admin, threshold,
                                                                                       settings):
    campaign = CampaignFactory()
    file, _ = leads_file(100)

    response = upload(api, campaign, file)

    assert response.status_code == 202, response.content
    job = ImportJob.objects.get()
    assert response.json() == {"import_id": job.pk, "status": "queued", "url": f"/api/cam/imports/{job.pk}"}
    assert response["Location"] == f"/api/cam/imports/{job.pk}"
    assert (job.campaign, job.file_name, job.requested_by, job.status) == (campaign, "big.csv", admin, "queued")
    assert kept_files(settings.CAM_IMPORT_DIR) == [Path(settings.CAM_IMPORT_DIR) / job.path]
    assert job.path.startswith(f"{campaign.pk}/import-jobs/") and job.path.endswith("-big.csv")
    assert not Lead.objects.exists()  # nothing is imported in the request


def test_the_import_is_queued_for_a_worker_once_the_job_is_committed(api, threshold,
                                                                       django_capture_on_commit_callbacks):
    campaign = CampaignFactory()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = upload(api, campaign, leads_file(100)[0])

    assert len(callbacks) == 1
    task = OrmQ.objects.get().task
    assert (task["func"], task["args"]) == ("leads.tasks.import_job_run", (response.json()["import_id"],))


def test_an_upload_above_the_threshold_that_is_not_csv_is_refused_at_once_and_nothing_is_kept(api, threshold,
                                                                                             settings):
    campaign = CampaignFactory()
    binary = SimpleUploadedFile("photo.csv", b"\x89PNG\r\n\x1a\n\x00\x00" * 400)

    response = upload(api, campaign, binary)

    body = assert_json_error(response, 400)
    assert "a binary file, not CSV text" in body["file"][0]
    assert not ImportJob.objects.exists()
    assert kept_files(settings.CAM_IMPORT_DIR) == []


def test_files_up_to_the_threshold_are_imported_in_the_request_and_larger_ones_in_the_background(api, settings):
    settings.CAM_IMPORT_SYNC_MAX_KB = 256
    campaign = CampaignFactory()
    row = "x" * 80

    def sized(size: int, prefix: str) -> SimpleUploadedFile:
        lines, total, i = ["email,notes"], 12, 0
        while total < size:
            line = f"{prefix}{i}@bulk.example,{row}"
            lines.append(line)
            total, i = total + len(line) + 1, i + 1
        data = ("\n".join(lines) + "\n").encode()
        return SimpleUploadedFile(f"{prefix}.csv", data[:size].rsplit(b"\n", 1)[0] + b"\n")

    small = sized(256 * 1024, "small")
    large = sized(256 * 1024 + 2048, "large")
    assert small.size <= 256 * 1024 < large.size
    small_rows = small.read().count(b"\n") - 1
    small.seek(0)

    synchronous = upload(api, campaign, small)
    background = upload(api, campaign, large)

    assert synchronous.status_code == 201 and synchronous.json()["imported"] == small_rows
    assert background.status_code == 202 and background.json()["status"] == "queued"


def test_the_schema_documents_the_202_and_the_import_endpoint(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert "202" in schema["paths"]["/api/cam/campaigns/{id}/leads"]["post"]["responses"]
    assert "200" in schema["paths"]["/api/cam/imports/{id}"]["get"]["responses"]


# --- the task ----------------------------------------------------------------------------------------


def test_the_task_imports_the_file_and_the_api_shows_its_counters_and_report_with_line_numbers(api, threshold,
                                                                                               settings):
    campaign = CampaignFactory()
    file, expected = leads_file(1200)
    job_id = upload(api, campaign, file).json()["import_id"]
    queued = api.get(f"/api/cam/imports/{job_id}").json()
    assert (queued["status"], queued["report"], queued["started_at"], queued["note"]) == ("queued", None, None, "")

    summary = import_job_run(job_id)

    response = api.get(f"/api/cam/imports/{job_id}")
    assert response.status_code == 200
    body = response.json()
    assert summary["status"] == body["status"] == "done"
    assert {key: body[key] for key in ("id", "campaign_id", "file_name", "rows_read", "imported", "duplicates",
                                       "rejected", "error", "note")} == {
        "id": job_id, "campaign_id": campaign.pk, "file_name": "big.csv", "rows_read": expected["rows"],
        "imported": expected["imported"], "duplicates": 1, "rejected": 2, "error": "", "note": "",
    }
    assert body["created_at"] <= body["started_at"] <= body["finished_at"]
    report = body["report"]
    assert (report["imported"], report["duplicates"], report["rejected"]) == (expected["imported"], 1, 2)
    assert [(p["line"], p["reason"]) for p in report["rejected_rows"]] == [
        (expected["bad_line"], "invalid email: An email address must have an @-sign."),
        (expected["extra_line"], "has 4 fields, the header has 3"),
    ]
    assert report["duplicate_rows"] == [
        {"line": expected["repeat_line"], "email": "p0@bulk0.example", "reason": "repeats line 2"}]
    assert Lead.objects.filter(campaign=campaign, status=Lead.Status.NEW).count() == expected["imported"]
    assert kept_files(settings.CAM_IMPORT_DIR) == []  # removed once done


def test_the_report_is_the_one_a_synchronous_upload_of_the_same_file_gives(api, settings):
    settings.CAM_IMPORT_SYNC_MAX_KB = 1024
    file, _ = leads_file(100)
    synchronous = upload(api, CampaignFactory(), file).json()
    settings.CAM_IMPORT_SYNC_MAX_KB = 1
    file.seek(0)
    job_id = upload(api, CampaignFactory(), file).json()["import_id"]

    import_job_run(job_id)

    assert ImportJob.objects.get(pk=job_id).report == synchronous


def test_running_the_task_twice_imports_nothing_twice(api, threshold):
    campaign = CampaignFactory()
    job_id = upload(api, campaign, leads_file(700)[0]).json()["import_id"]
    import_job_run(job_id)
    done = ImportJob.objects.get(pk=job_id)

    again = import_job_run(job_id)

    assert again == {"import_id": job_id, "note": "already running, finished or deleted: nothing done"}
    assert Lead.objects.filter(campaign=campaign).count() == 700
    after = ImportJob.objects.get(pk=job_id)
    assert (after.status, after.attempts, after.report, after.finished_at) == ("done", 1, done.report, done.finished_at)


def test_a_second_delivery_while_a_run_holds_the_job_returns_at_once(api, threshold):
    campaign = CampaignFactory()
    job_id = upload(api, campaign, leads_file(100)[0]).json()["import_id"]
    assert import_job_claim(job_id=job_id) is not None  # a first delivery holds it

    second = import_job_run(job_id)

    assert second["note"] == "already running, finished or deleted: nothing done"
    assert not Lead.objects.exists()
    assert ImportJob.objects.filter(pk=job_id, status="running", attempts=1).exists()


def test_a_job_of_a_deleted_campaign_is_not_run(api, threshold):
    campaign = CampaignFactory()
    job_id = upload(api, campaign, leads_file(100)[0]).json()["import_id"]
    campaign.delete()

    assert import_job_run(job_id)["note"] == "already running, finished or deleted: nothing done"


def test_progress_is_written_once_per_batch_not_once_per_row(api, threshold):
    campaign = CampaignFactory()
    job_id = upload(api, campaign, leads_file(5 * INSERT_BATCH)[0]).json()["import_id"]

    with CaptureQueriesContext(connection) as queries:
        import_job_run(job_id)

    updates = [q["sql"] for q in queries.captured_queries
               if q["sql"].startswith("UPDATE") and ImportJob._meta.db_table in q["sql"]]
    # The claim, one per batch of 500 (5), and the end.
    assert len(updates) == 1 + 5 + 1, updates


def test_leads_insert_tells_its_progress_after_each_batch_and_every_batch_of_bad_rows(now):
    campaign = CampaignFactory()
    good = [LeadRow(line=i + 2, email=f"a{i}@x.example", fields={}, extra={}) for i in range(INSERT_BATCH + 10)]
    bad = [RowProblem(i, "", "bad") for i in range(2 * INSERT_BATCH)]
    told = []

    report = leads_insert(campaign=campaign, rows=[*good, *bad], now=now,
                          progress=lambda r: told.append((r.rows_read, r.imported, len(r.rejected))))

    assert told == [(INSERT_BATCH, INSERT_BATCH, 0), (2 * INSERT_BATCH, INSERT_BATCH, INSERT_BATCH - 10),
                    (3 * INSERT_BATCH, INSERT_BATCH, 2 * INSERT_BATCH - 10)]
    assert (report.rows_read, report.imported, len(report.rejected)) == (3 * INSERT_BATCH + 10, INSERT_BATCH + 10,
                                                                        2 * INSERT_BATCH)
    assert "rows_read" not in report.as_dict()  # the report's shape is the API's


def test_a_job_whose_file_is_gone_fails_with_the_reason(api, threshold, settings):
    job_id = upload(api, CampaignFactory(), leads_file(100)[0]).json()["import_id"]
    for path in kept_files(settings.CAM_IMPORT_DIR):
        path.unlink()

    summary = import_job_run(job_id)

    body = api.get(f"/api/cam/imports/{job_id}").json()
    assert summary["status"] == body["status"] == "failed"
    assert body["error"].endswith(": no such file") and body["report"] is None and body["finished_at"]


# --- what staff are told ---------------------------------------------------------------------------------


def test_a_job_queued_for_more_than_30_seconds_says_no_worker_took_it(api, admin, threshold, client):
    job_id = upload(api, CampaignFactory(), leads_file(100)[0]).json()["import_id"]
    client.force_login(admin)
    assert api.get(f"/api/cam/imports/{job_id}").json()["note"] == ""
    assert "qcluster" not in client.get(f"/imports/{job_id}").content.decode()

    ImportJob.objects.filter(pk=job_id).update(created_at=F("created_at") - timedelta(seconds=31))

    assert api.get(f"/api/cam/imports/{job_id}").json()["note"] == WAITING_FOR_WORKER
    page = client.get(f"/imports/{job_id}").content.decode()
    assert "Waiting for a worker — is `python manage.py qcluster` running?" in page


def test_the_imports_api_needs_view_lead_and_answers_404_for_an_unknown_id(api, threshold):
    job_id = upload(api, CampaignFactory(), leads_file(100)[0]).json()["import_id"]
    without = token_client(user_with_perms("campaigns.view_campaign", "leads.add_lead"))
    viewer = token_client(user_with_perms("leads.view_lead"))

    assert_json_error(without.get(f"/api/cam/imports/{job_id}"), 403)
    assert_json_error(anonymous_client().get(f"/api/cam/imports/{job_id}"), 401)
    assert_json_error(api.get("/api/cam/imports/999999"), 404)
    assert viewer.get(f"/api/cam/imports/{job_id}").status_code == 200


def test_uploading_needs_add_lead_whatever_the_size(threshold):
    viewer = token_client(user_with_perms("campaigns.view_campaign", "leads.view_lead"))

    assert_json_error(upload(viewer, CampaignFactory(), leads_file(100)[0]), 403)
    assert not ImportJob.objects.exists()


# --- the console ---------------------------------------------------------------------------------------


def test_a_console_upload_above_the_threshold_shows_its_progress_then_the_report(client, admin, threshold):
    campaign = CampaignFactory()
    client.force_login(admin)
    file, expected = leads_file(600)

    response = client.post(f"/campaigns/{campaign.pk}/leads", {"file": file})

    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/imports/{job.pk}"
    page = client.get(response["Location"]).content.decode()
    assert "big.csv is being imported in the background" in page
    assert '<meta http-equiv="refresh" content="2">' in page and "Queued" in page
    assert 'id="import-report"' not in page

    import_job_run(job.pk)

    page = client.get(f"/imports/{job.pk}").content.decode()
    assert 'http-equiv="refresh"' not in page and "Done" in page
    assert "Imported 600 new leads from big.csv; they are enriched and scored by the next cycle." in page
    assert 'data-report="imported">600<' in page
    assert 'data-report="duplicates">1<' in page and 'data-report="rejected">2<' in page
    assert f'<td class="num">{expected["bad_line"]}</td><td>not-an-address</td><td>invalid email' in page
    assert f'<td class="num">{expected["repeat_line"]}</td><td>p0@bulk0.example</td><td>repeats line 2</td>' in page


def test_the_progress_page_shows_the_counters_while_running_and_a_failure_with_its_reason(client, admin, threshold,
                                                                                          settings):
    campaign = CampaignFactory()
    client.force_login(admin)
    client.post(f"/campaigns/{campaign.pk}/leads", {"file": leads_file(100)[0]})
    job = ImportJob.objects.get()
    import_job_claim(job_id=job.pk)
    ImportJob.objects.filter(pk=job.pk).update(rows_read=1500, imported=1400)

    page = client.get(f"/imports/{job.pk}").content.decode()
    assert 'data-progress="rows_read">1500<' in page and 'data-progress="imported">1400<' in page
    assert '<meta http-equiv="refresh" content="2">' in page and "Running" in page

    ImportJob.objects.filter(pk=job.pk).update(status="queued")
    for path in kept_files(settings.CAM_IMPORT_DIR):
        path.unlink()
    import_job_run(job.pk)

    page = client.get(f"/imports/{job.pk}").content.decode()
    assert "The import failed:" in page and "no such file" in page and 'http-equiv="refresh"' not in page


def test_the_progress_page_needs_view_lead(client, admin, threshold):
    campaign = CampaignFactory()
    client.force_login(admin)
    client.post(f"/campaigns/{campaign.pk}/leads", {"file": leads_file(100)[0]})
    job = ImportJob.objects.get()
    client.force_login(user_with_perms("campaigns.view_campaign"))

    assert client.get(f"/imports/{job.pk}").status_code == 403
    client.force_login(admin)
    assert client.get("/imports/999999").status_code == 404


def test_a_small_console_upload_still_shows_its_report_on_the_leads_page(client, admin, settings):
    settings.CAM_IMPORT_SYNC_MAX_KB = 256
    campaign = CampaignFactory()
    client.force_login(admin)

    page = client.post(f"/campaigns/{campaign.pk}/leads", {"file": leads_file(20)[0]}, follow=True)

    assert page.redirect_chain == [(f"/campaigns/{campaign.pk}/leads", 302)]
    assert 'data-report="imported">20<' in page.content.decode()
    assert not ImportJob.objects.exists()


def test_the_admin_lists_imports_read_only(client, api, threshold):
    job_id = upload(api, CampaignFactory(), leads_file(100)[0]).json()["import_id"]
    client.force_login(superuser())

    assert client.get("/admin/leads/importjob/").status_code == 200
    assert client.get(f"/admin/leads/importjob/{job_id}/change/").status_code == 200
    assert client.get("/admin/leads/importjob/add/").status_code == 403
    assert client.post(f"/admin/leads/importjob/{job_id}/delete/", {"post": "yes"}).status_code == 403


# --- across processes: a worker killed half-way, and a real qcluster ---------------------------------------


def _child_env(database_url, settings, **extra) -> dict:
    return {**os.environ, "DATABASE_URL": database_url, "CAM_IMPORT_DIR": str(settings.CAM_IMPORT_DIR),
            "CAM_LOG_LEVEL": "WARNING", "MAKE_WEBHOOK_URL": "", **extra}


@pytest.mark.django_db(transaction=True)
def test_a_run_killed_half_way_is_taken_over_after_the_task_timeout_and_each_lead_stays_single(
    api, threshold, database_url, settings
):
    campaign = CampaignFactory()
    total = 20_000
    job_id = upload(api, campaign, leads_file(total)[0]).json()["import_id"]
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", f"from leads.tasks import import_job_run; import_job_run({job_id})"],
        cwd=django_settings.BASE_DIR, env=_child_env(database_url, settings),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not ImportJob.objects.filter(pk=job_id, imported__gt=0).exists():
            assert time.monotonic() < deadline and worker.poll() is None, "the worker never wrote its progress"
            time.sleep(0.05)
    finally:
        worker.kill()  # SIGKILL, as when a machine is lost: no clean-up runs
        worker.wait(timeout=30)
    before = Lead.objects.filter(campaign=campaign).count()
    assert 0 < before < total
    job = ImportJob.objects.get(pk=job_id)
    assert (job.status, job.attempts, job.finished_at) == ("running", 1, None)

    # Redelivered before the task timeout: the first run might still be alive, nothing is done.
    assert import_job_run(job_id)["note"] == "already running, finished or deleted: nothing done"
    ImportJob.objects.filter(pk=job_id).update(
        started_at=F("started_at") - timedelta(seconds=settings.CAM_TASK_TIMEOUT_SECONDS + 1))
    assert "its worker stopped" in api.get(f"/api/cam/imports/{job_id}").json()["note"]

    summary = import_job_run(job_id)

    job = ImportJob.objects.get(pk=job_id)
    assert summary["status"] == job.status == "done" and job.attempts == 2
    assert Lead.objects.filter(campaign=campaign).count() == total
    assert job.report["imported"] == total - before
    assert job.report["duplicates"] == before + 1  # the first run's leads, and the repeated row
    already = [p for p in job.report["duplicate_rows"] if p["reason"] == "already in this campaign"]
    assert len(already) == before
    assert "leads the stopped run imported count as duplicates" in api.get(f"/api/cam/imports/{job_id}").json()["note"]


@pytest.mark.django_db(transaction=True)
def test_a_real_qcluster_imports_an_upload_and_the_api_shows_it_done(api, threshold, database_url, settings, tmp_path):
    campaign = CampaignFactory()
    file, expected = leads_file(1500)
    log = (tmp_path / "qcluster.log").open("w+")
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], cwd=django_settings.BASE_DIR,
        env=_child_env(database_url, settings, CAM_Q_GUARD_CYCLE="0.1", CAM_Q_POLL="0.1", CAM_WORKERS="1"),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        response = upload(api, campaign, file)
        assert response.status_code == 202
        url = response.json()["url"]
        deadline = time.monotonic() + 90
        while (body := api.get(url).json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"not done in 90 s: {body}"
            assert cluster.poll() is None, "qcluster stopped"
            time.sleep(0.2)
    finally:
        # SIGTERM to the cluster's main process only: it stops its workers itself (signalling
        # them all at once can deadlock django-q2).
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)  # only the group this test started
            cluster.wait(timeout=30)
            pytest.fail("qcluster did not stop within 60 s of SIGTERM")
        log.seek(0)
        output = log.read()
        log.close()

    assert body["status"] == "done", output
    assert (body["rows_read"], body["imported"], body["duplicates"], body["rejected"]) == (
        expected["rows"], expected["imported"], 1, 2)
    assert [p["line"] for p in body["report"]["rejected_rows"]] == [expected["bad_line"], expected["extra_line"]]
    assert Lead.objects.filter(campaign=campaign).count() == expected["imported"]
    assert Success.objects.filter(func="leads.tasks.import_job_run", args=(body["id"],)).count() == 1
    assert not OrmQ.objects.exists()  # acknowledged


def test_old_finished_imports_are_pruned_with_a_failed_ones_file_and_running_ones_stay(settings, tmp_path):
    from django.utils import timezone

    from leads.sources import import_dir
    from leads.tasks import import_jobs_old_prune

    settings.CAM_RUN_HISTORY_DAYS = 90
    campaign = CampaignFactory()
    old = timezone.now() - timedelta(days=91)
    kept = import_dir() / "failed-old.csv"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text("email\n")
    for status, created, path in (("done", old, "x.csv"), ("failed", old, "failed-old.csv"),
                                  ("running", old, "r.csv"), ("done", timezone.now(), "y.csv")):
        ImportJob.objects.create(campaign=campaign, path=path, file_name=path, status=status, created_at=created)

    assert import_jobs_old_prune() == 2

    assert sorted(ImportJob.objects.values_list("path", flat=True)) == ["r.csv", "y.csv"]
    assert not kept.exists()
