from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient


def test_the_openapi_schema_is_valid_and_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"), stderr=StringIO())
    schema = (tmp_path / "schema.yaml").read_text()
    assert "openapi: 3." in schema and "/api/cam/campaigns/{id}/run-cycle:" in schema
    assert "tokenAuth" in schema and "cookieAuth" in schema


@pytest.mark.django_db
def test_the_documentation_page_and_its_assets_are_served_locally():
    client = APIClient()
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    asset = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert asset.status_code == 200
