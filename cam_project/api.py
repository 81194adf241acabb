"""What every API view shares: permissions, pagination, errors as JSON, id converter."""

import logging

from django.http import JsonResponse
from django.shortcuts import render
from django.views.defaults import bad_request as django_bad_request
from django.views.defaults import page_not_found, server_error
from rest_framework import exceptions, parsers, permissions, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import BaseRenderer, JSONRenderer

from leads.services import InvalidTransition
from campaigns.services import Refused

logger = logging.getLogger(__name__)


class ModelPermissions(permissions.DjangoModelPermissions):
    """Authenticated, and the Django model permission matching the method: view for reads
    (a user without it gets 403), add/change/delete for writes."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }


class CanViewCampaigns(permissions.BasePermission):
    """The schema and the API docs describe every endpoint: for users who may read campaigns
    (anonymous: 401, authenticated without campaigns.view_campaign: 403)."""

    message = "The API documentation needs the permission campaigns.view_campaign."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.has_perm("campaigns.view_campaign"))


class ActionPermissions(ModelPermissions):
    """For a POST that acts on an existing object (resume a lead, resolve a send): it changes
    the object, so it needs view and change, not add."""

    perms_map = {**ModelPermissions.perms_map,
                 "POST": ["%(app_label)s.view_%(model_name)s", "%(app_label)s.change_%(model_name)s"]}


def run_permissions(dry_run: bool) -> tuple[str, ...]:
    """A dry run discovers and enriches leads for real, so it needs to add leads; a live run
    sends email, so it needs to change the campaign."""
    return ("campaigns.view_campaign", "leads.add_lead") if dry_run else ("campaigns.view_campaign", "campaigns.change_campaign")


def require_perm(request, perm: str) -> None:
    """For actions whose permission is not the method's (a live run needs change_campaign)."""
    if not request.user.has_perm(perm):
        raise exceptions.PermissionDenied(f"This needs the permission {perm}.")


def query_param(request, name: str, *, choices=None, max_length: int = 200) -> str:
    """A query-string parameter checked like a body field (length, choices, no NUL bytes that
    PostgreSQL would refuse); "" when absent; 400 {name: [...]} when invalid."""
    value = request.query_params.get(name, "")
    if not value:
        return ""
    field = serializers.ChoiceField(choices=choices) if choices else serializers.CharField(max_length=max_length)
    try:
        return field.run_validation(value)
    except exceptions.ValidationError as exc:
        raise exceptions.ValidationError({name: exc.detail}) from None


class JSONParser(parsers.JSONParser):
    """DRF's parser, and a body nested too deep for Python's recursion limit is a 400 too."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from None


class CSVRenderer(BaseRenderer):
    """Lets `?format=csv` through content negotiation on the lists that export (leads, sends):
    those views answer with a streamed CSV (cam_project.export) instead of a page of JSON."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        raise NotImplementedError("the exporting views stream their CSV themselves")


class CSVExportMixin:
    """For a list view that `?format=csv` exports: the CSV renderer is offered to GET only, so
    any other method asked for CSV is a 404 (an unknown format), never a half-rendered answer."""

    def get_renderers(self):
        renderers = [JSONRenderer()]
        if getattr(self, "request", None) is None or self.request.method in ("GET", "HEAD"):
            renderers.append(CSVRenderer())
        return renderers


def wants_csv(request) -> bool:
    return getattr(request, "accepted_renderer", None) is not None and request.accepted_renderer.format == "csv"


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def exception_handler(exc, context):
    """DRF's JSON errors, plus the state machine's refusals as 400 with the field at fault, and
    staff actions the state does not allow (resume, resolve) as 409 with the reason."""
    from rest_framework.views import exception_handler as drf_exception_handler  # DRF imports this module

    if isinstance(exc, InvalidTransition):
        exc = exceptions.ValidationError({"status": [str(exc)]})
    if isinstance(exc, Refused):
        # A valid request the lead's or the send's state does not allow now: 409 with the reason.
        exc = Conflict(str(exc))
    response = drf_exception_handler(exc, context)
    renderer = getattr(context["request"], "accepted_renderer", None)
    if response is not None and type(renderer) is not JSONRenderer:
        # The docs pages render HTML and the schema YAML or OpenAPI JSON: their errors are plain
        # JSON all the same, like every API error.
        as_json = JsonResponse(response.data, status=response.status_code, safe=False)
        for header in ("WWW-Authenticate", "Retry-After"):
            if header in response:
                as_json[header] = response[header]
        return as_json
    return response


class Conflict(exceptions.APIException):
    status_code = 409
    default_detail = "Refused in the current state."
    default_code = "conflict"


class ErrorSerializer(serializers.Serializer):
    """{"detail": "…"}: why the request was refused."""

    detail = serializers.CharField()


class IdConverter:
    """Ids in URLs: at most 18 digits, so a huge number is a 404, not a database overflow."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(value)


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def bad_request(request, exception=None):
    """Django refused the request before any view (body too large, bad Host header)."""
    if _is_api(request):
        return JsonResponse({"detail": f"Bad request: {exception or 'refused'}"}, status=400)
    return django_bad_request(request, exception)


# What each permission lets a user do in the console (README, "Operator console").
CONSOLE_PERMISSIONS = (
    ("campaigns.view_campaign", "see the dashboard, the campaigns and the API documentation"),
    ("leads.view_lead", "see a campaign's leads"),
    ("campaigns.add_campaign", "create campaigns"),
    ("leads.add_lead", "upload leads and run dry-run cycles"),
    ("campaigns.change_campaign", "pause, resume and run live cycles"),
)


def permission_denied(request, exception=None):
    """The console's 403 page (its layout, what the account lacks, a logout button); JSON under /api/."""
    message = str(exception or "")
    if _is_api(request):
        return JsonResponse({"detail": message or "You do not have permission to perform this action."}, status=403)
    user = request.user
    missing = [(perm, what) for perm, what in CONSOLE_PERMISSIONS if user.is_authenticated and not user.has_perm(perm)]
    return render(request, "403.html", {"exception": message, "missing": missing}, status=403)


def not_found(request, exception=None):
    if _is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def internal_error(request):
    if _is_api(request):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return server_error(request)


_ERRORS = (
    ("400", "Invalid input: {field: [messages]} (or non_field_errors)"),
    ("401", "Not authenticated: send `Authorization: Token <key>` or log in"),
    ("403", "Authenticated, but without the Django permission this needs"),
    ("404", "No such object (or page)"),
)


def add_error_responses(result, generator, request, public):
    """drf-spectacular post-processing hook: every operation documents the JSON errors it may return."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = {
        "type": "object",
        "additionalProperties": True,
        "description": '{"detail": "…"} or {"field": ["message", …]}',
    }
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code, description in _ERRORS:
                responses.setdefault(code, {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                })
    return result
