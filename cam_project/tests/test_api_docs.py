from io import StringIO

import pytest
from django.core.management import call_command

from cam_project.testing import anonymous_client, assert_json_error, session_client, token_client, user_with_perms


def test_the_openapi_schema_is_valid_and_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"), stderr=StringIO())
    schema = (tmp_path / "schema.yaml").read_text()
    assert "openapi: 3." in schema and "/api/cam/campaigns/{id}/run-cycle:" in schema
    assert "tokenAuth" in schema and "cookieAuth" in schema


DOCS = ["/api/schema/", "/api/schema/?format=json", "/api/docs/", "/api/redoc/"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", DOCS)
def test_the_schema_and_docs_refuse_an_anonymous_client_with_401_json(url):
    body = assert_json_error(anonymous_client().get(url), 401)

    assert body == {"detail": "Authentication credentials were not provided."}


@pytest.mark.django_db
@pytest.mark.parametrize("url", DOCS)
def test_the_schema_and_docs_refuse_a_user_without_view_campaign_with_403_json(url):
    client = token_client(user_with_perms("leads.view_lead", "outreach.view_suppression"))

    body = assert_json_error(client.get(url), 403)

    assert body == {"detail": "The API documentation needs the permission campaigns.view_campaign."}


@pytest.mark.django_db
@pytest.mark.parametrize("url", DOCS)
def test_the_schema_and_docs_are_served_to_a_user_who_may_view_campaigns(url):
    client = session_client(user_with_perms("campaigns.view_campaign"))

    assert client.get(url).status_code == 200


@pytest.mark.django_db
def test_the_schema_is_openapi_3():
    client = token_client(user_with_perms("campaigns.view_campaign"))

    assert client.get("/api/schema/?format=json").json()["openapi"].startswith("3.")


@pytest.mark.django_db
def test_the_documentation_page_and_its_assets_are_served_locally():
    client = session_client(user_with_perms("campaigns.view_campaign"))
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
