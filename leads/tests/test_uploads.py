"""Uploads bigger than CAM_MAX_UPLOAD_MB (cam_project/uploads.py) are refused without being
kept: 413 on the API, an error on the console's leads page and in the admin."""

import io
import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http.multipartparser import MultiPartParser
from django.test import Client, RequestFactory
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from cam_project.testing import assert_json_error
from cam_project.uploads import CappedUploadHandler, upload_refusal
from campaigns.tests.factories import CampaignFactory
from leads.models import Lead, LeadSource

pytestmark = pytest.mark.django_db

MB = 1024 * 1024


def leads_csv(size: int) -> bytes:
    """A CSV of leads of about `size` bytes (rows of about 1 KB: notes of 900 characters)."""
    rows, total, i = [b"email,notes\n"], 12, 0
    while total < size:
        row = f"p{i}@bulk.example,{'n' * 900}\n".encode()
        rows.append(row)
        total, i = total + len(row), i + 1
    return b"".join(rows)


@pytest.fixture
def cap(settings):
    """The cap lowered to 1 MB."""
    settings.CAM_MAX_UPLOAD_MB = 1
    return MB


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser("op", "op@example.org", "pw")


def csrf_client(user) -> Client:
    """A browser-like client: the CSRF middleware checks the token, so it parses the body
    before any view does."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/")  # sets the csrftoken cookie
    return client


def csrf_post(client: Client, url: str, data: dict):
    # The token comes first, as {% csrf_token %} puts it first in a form.
    return client.post(url, {"csrfmiddlewaretoken": client.cookies["csrftoken"].value, **data}, follow=True)


# --- API -----------------------------------------------------------------------------------------


def test_the_api_answers_413_json_to_an_upload_over_the_cap_and_imports_nothing(api, cap):
    campaign = CampaignFactory()
    upload = SimpleUploadedFile("big.csv", leads_csv(2 * cap), content_type="text/csv")

    response = api.post(f"/api/cam/campaigns/{campaign.pk}/leads", {"file": upload}, format="multipart")

    body = assert_json_error(response, 413)
    assert list(body) == ["detail"] and "larger than 1 MB (CAM_MAX_UPLOAD_MB)" in body["detail"]
    assert not Lead.objects.exists()


def test_the_api_imports_an_upload_just_under_the_cap(api, cap, settings):
    settings.CAM_IMPORT_SYNC_MAX_KB = 1024  # imported in the request (the background: test_import_jobs.py)
    campaign = CampaignFactory()
    data = leads_csv(cap - 4096)
    upload = SimpleUploadedFile("almost.csv", data, content_type="text/csv")

    response = api.post(f"/api/cam/campaigns/{campaign.pk}/leads", {"file": upload}, format="multipart")

    assert response.status_code == 201, response.content[:300]
    assert response.json()["imported"] == data.count(b"\n") - 1


def test_the_api_schema_documents_the_413(api):
    schema = json.loads(api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    assert "413" in schema["paths"]["/api/cam/campaigns/{id}/leads"]["post"]["responses"]


# --- console -------------------------------------------------------------------------------------


def test_the_console_import_refuses_an_upload_over_the_cap_with_a_message(operator, cap):
    campaign = CampaignFactory()
    client = csrf_client(operator)

    response = csrf_post(client, f"/campaigns/{campaign.pk}/leads",
                         {"file": SimpleUploadedFile("big.csv", leads_csv(2 * cap))})

    assert response.status_code == 200
    assert "The upload is larger than 1 MB (CAM_MAX_UPLOAD_MB)" in response.content.decode()
    assert not Lead.objects.exists()


def test_the_console_refuses_a_source_file_over_the_cap_and_keeps_nothing(operator, cap, settings):
    campaign = CampaignFactory()
    client = csrf_client(operator)

    response = csrf_post(client, f"/campaigns/{campaign.pk}/leads",
                         {"action": "add_source", "name": "Big", "source_file": SimpleUploadedFile("big.csv", leads_csv(2 * cap))})

    assert response.status_code == 200
    assert "The upload is larger than 1 MB" in response.content.decode()
    assert not LeadSource.objects.exists()
    assert not any(Path(settings.CAM_IMPORT_DIR).rglob("*.csv"))


def test_the_admin_refuses_a_source_file_over_the_cap_with_a_field_error(operator, cap, settings):
    campaign = CampaignFactory()
    client = csrf_client(operator)

    response = csrf_post(client, "/admin/leads/leadsource/add/", {
        "campaign": campaign.pk, "name": "Big", "kind": "csv", "settings": "{}",
        "csv_file": SimpleUploadedFile("big.csv", leads_csv(2 * cap)), "active": "on",
    })

    assert response.status_code == 200
    assert '<ul class="errorlist' in response.content.decode()
    assert "The upload is larger than 1 MB" in response.content.decode()
    assert not LeadSource.objects.exists()
    assert not any(Path(settings.CAM_IMPORT_DIR).rglob("*.csv"))


# --- the handler, under Django's multipart parser ---------------------------------------------------


def parse(body: bytes, declared_length: int):
    """Parse `body` as Django does, with the project's upload handlers, trusting the declared
    length as a server that does not enforce it would; (request, stream, FILES)."""
    request = RequestFactory().post("/")
    stream = io.BytesIO(body)
    meta = {"CONTENT_TYPE": MULTIPART_CONTENT, "CONTENT_LENGTH": str(declared_length)}
    _, files = MultiPartParser(meta, stream, request.upload_handlers).parse()
    return request, stream, files


def multipart(size: int) -> bytes:
    return encode_multipart(BOUNDARY, {"csrfmiddlewaretoken": "t", "file": SimpleUploadedFile("big.csv", b"x" * size)})


def test_a_request_declaring_more_than_the_cap_is_refused_before_its_file_is_read(cap):
    body = multipart(5 * cap)

    request, stream, files = parse(body, declared_length=len(body))

    assert "file" not in files
    assert upload_refusal(request).field == "file"
    assert stream.tell() < 256 * 1024  # the field before the file, and one chunk at most


def test_file_bytes_beyond_the_cap_are_refused_whatever_the_declared_length(cap):
    body = multipart(5 * cap)

    request, stream, files = parse(body, declared_length=1000)

    assert "file" not in files
    assert upload_refusal(request).field == "file"
    assert stream.tell() <= cap + 256 * 1024 < len(body)


def test_an_upload_under_the_cap_passes_the_handler_untouched(cap):
    body = multipart(cap - 1000)

    request, _, files = parse(body, declared_length=len(body))

    assert upload_refusal(request) is None
    assert files["file"].size == cap - 1000


def test_the_capped_handler_comes_before_djangos_own(settings):
    assert settings.FILE_UPLOAD_HANDLERS[0] == "cam_project.uploads.CappedUploadHandler"
    assert isinstance(RequestFactory().post("/").upload_handlers[0], CappedUploadHandler)
