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
def test_the_schema_and_docs_need_a_login_like_every_endpoint(django_user_model):
    client = APIClient()
    assert client.get("/api/schema/").status_code == 401
    assert client.get("/api/docs/").status_code == 401
    client.force_authenticate(django_user_model.objects.create_user("reader", "r@example.org", "pw"))
    assert client.get("/api/schema/?format=json").json()["openapi"].startswith("3.")


@pytest.mark.django_db
def test_the_documentation_page_and_its_assets_are_served_locally(django_user_model):
    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_user("reader", "r@example.org", "pw"))
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    asset = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert asset.status_code == 200


def test_every_reference_in_the_schema_resolves():
    import json

    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    document = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    components = document["components"]["schemas"]

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = set(refs(document["paths"])) | set(refs(components))
    assert found and all(ref.rsplit("/", 1)[1] in components for ref in found), sorted(found)
