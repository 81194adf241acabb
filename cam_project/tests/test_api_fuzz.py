"""The API against its own OpenAPI schema: schemathesis generates valid and invalid requests for
every operation, and no input may produce a server error or a response the schema does not describe.

Operations are listed from the schema at collection time and fuzzed one test each, with
hypothesis driving schemathesis' strategies directly (its pytest plugin predates pytest 9).
"""

import json
import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from cam_project.wsgi import application
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.importing import ImportReport
from leads.models import ImportJob
from leads.tests.factories import LeadFactory
from outreach.tests.factories import OutreachAttemptFactory, SuppressionFactory



def load_schema():
    """The schema as /api/schema/ serves it (that endpoint needs a login), calls going to the WSGI app."""
    document = OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True))
    schema = schemathesis.openapi.from_dict(json.loads(document))
    schema.app = application
    return schema


SCHEMA = load_schema()
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
# Per operation. CI runs the same derandomized cases every time, so it cannot fail by chance;
# CAM_FUZZ_EXAMPLES=300 CAM_FUZZ_RANDOM=1 explores new ones (do that after changing the API).
EXAMPLES = int(os.environ.get("CAM_FUZZ_EXAMPLES", "40"))
DERANDOMIZE = os.environ.get("CAM_FUZZ_RANDOM") != "1"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def token(db, django_user_model, settings):
    """A superuser's token, and a few rows for the generated ids to find."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    for _ in range(3):
        campaign = CampaignFactory()
        MessageStepFactory(campaign=campaign, position=1)
        OutreachAttemptFactory(lead=LeadFactory(campaign=campaign))
        ImportJob.objects.create(campaign=campaign, path="x.csv", file_name="x.csv", status=ImportJob.Status.DONE,
                                 report=ImportReport().as_dict())
    SuppressionFactory()
    user = django_user_model.objects.create_superuser("fuzz", "fuzz@example.org", "pw")
    # The WSGI handler would otherwise close the test's connection after each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield Token.objects.create(user=user).key
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_the_schema_lists_every_endpoint_of_the_contract():
    paths = {(op.method.upper(), op.path) for op in OPERATIONS}
    assert {
        ("GET", "/api/cam/campaigns"), ("POST", "/api/cam/campaigns"), ("GET", "/api/cam/campaigns/{id}"),
        ("PATCH", "/api/cam/campaigns/{id}"), ("PUT", "/api/cam/campaigns/{id}/pause"),
        ("PUT", "/api/cam/campaigns/{id}/resume"), ("POST", "/api/cam/campaigns/{id}/run-cycle"),
        ("GET", "/api/cam/campaigns/{id}/leads"), ("POST", "/api/cam/campaigns/{id}/leads"),
        ("GET", "/api/cam/campaigns/{id}/attempts"), ("GET", "/api/cam/leads/{id}"), ("PATCH", "/api/cam/leads/{id}"),
        ("GET", "/api/cam/suppressions"), ("POST", "/api/cam/suppressions"), ("DELETE", "/api/cam/suppressions"),
        ("DELETE", "/api/cam/suppressions/{id}"),
    } <= paths


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_request_makes_the_api_fail_or_break_its_schema(operation, token):
    @given(case=operation.as_strategy())
    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                         derandomize=DERANDOMIZE)
    def call(case):
        case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)

    call()
