"""Lead endpoints: a campaign's leads (list, add one, a list, or a CSV upload), one lead (edit,
resume), its history, and the imports of large uploads run in the background."""

from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import generics, permissions, serializers, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from cam_project.api import (
    ActionPermissions,
    CSVExportMixin,
    ErrorSerializer,
    JSONParser,
    Pagination,
    query_param,
    wants_csv,
)
from cam_project.uploads import UploadTooLarge, uploaded_file
from cam_project.validators import no_control_characters, time_zone
from campaigns.models import Campaign
from leads.import_jobs import import_in_background, import_job_note, import_job_queue
from leads.exports import leads_csv
from leads.importing import leads_import_upload, leads_insert
from leads.models import ImportJob, Lead, LeadEvent
from leads.rows import MAX_EXTRA_VALUE, LeadFileError, mapping_rows
from leads.services import STAFF_STATUSES, Actor, lead_update, leads_search
from outreach.attention import lead_resume

MAX_LEADS_PER_REQUEST = 10_000


class LeadSerializer(serializers.ModelSerializer):
    class Meta:
        model = Lead
        fields = ["id", "campaign", "email", "first_name", "last_name", "company", "job_title", "company_size",
                  "industry", "city", "country", "linkedin_url", "website", "timezone", "status", "score", "tags", "email_valid", "email_verification", "enrichment",
                  "source_data", "attempt_count", "next_action_at", "stopped_reason", "first_contacted_at",
                  "last_contacted_at", "replied_at", "created_at", "updated_at", "origin", "collected_at"]
        read_only_fields = fields


# A one-line detail: no line breaks, escape sequences or bidirectional overrides (the model's
# validator), which would end up in mail headers, terminals and logs.
_ONE_LINE = {"required": False, "allow_blank": True, "validators": [no_control_characters]}


class LeadDetailsSerializer(serializers.Serializer):
    """The lead fields staff and API clients give (the model's lengths and validators)."""

    first_name = serializers.CharField(max_length=100, **_ONE_LINE)
    last_name = serializers.CharField(max_length=100, **_ONE_LINE)
    company = serializers.CharField(max_length=200, **_ONE_LINE)
    job_title = serializers.CharField(max_length=200, **_ONE_LINE)
    company_size = serializers.CharField(max_length=50, **_ONE_LINE)
    industry = serializers.CharField(max_length=100, **_ONE_LINE)
    city = serializers.CharField(max_length=100, **_ONE_LINE)
    country = serializers.CharField(max_length=100, **_ONE_LINE)
    linkedin_url = serializers.CharField(max_length=300, **_ONE_LINE)
    website = serializers.CharField(max_length=300, **_ONE_LINE)
    timezone = serializers.CharField(max_length=64, required=False, allow_blank=True, validators=[time_zone],
                                     help_text="IANA name, e.g. Europe/Paris")


class LeadInputSerializer(LeadDetailsSerializer):
    """One lead to add. Addresses are checked and normalised as in a CSV import."""

    email = serializers.CharField(max_length=320)
    extra = serializers.DictField(child=serializers.CharField(max_length=MAX_EXTRA_VALUE, allow_blank=True),
                                  required=False, help_text="Other fields to keep with the lead (website, city, …).")


class LeadChangeSerializer(LeadDetailsSerializer):
    tags = serializers.ListField(child=serializers.CharField(max_length=50), max_length=20, required=False,
                                 help_text="Replaces the tags; do_not_contact stops outreach at once, hot qualifies.")
    status = serializers.ChoiceField(choices=STAFF_STATUSES, required=False,
                                     help_text="REPLIED records a reply; QUALIFIED and LOST close the lead.")


class RowProblemSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="CSV line, or item number (from 1) of a JSON list")
    email = serializers.CharField()
    reason = serializers.CharField()


class ImportReportSerializer(serializers.Serializer):
    imported = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    cut = serializers.IntegerField(help_text="Imported rows whose extra fields were cut (too many or too long)")
    duplicate_rows = RowProblemSerializer(many=True)
    rejected_rows = RowProblemSerializer(many=True)
    cut_rows = RowProblemSerializer(many=True, help_text="What was cut, per row")


class ImportQueuedSerializer(serializers.Serializer):
    import_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ImportJob.Status.choices)
    url = serializers.CharField(help_text="GET it for the import's progress and, once done, its report")


class UploadTooLargeError(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "upload_too_large"


LEADS_REQUEST = {
    "application/json": PolymorphicProxySerializer(
        component_name="LeadsToAdd",
        serializers=[LeadInputSerializer, LeadInputSerializer(many=True)],
        resource_type_field_name=None,
        many=False,
    ),
    "multipart/form-data": inline_serializer("LeadsFile", {"file": serializers.FileField()}),
}


class CampaignLeadsView(CSVExportMixin, generics.ListAPIView):
    serializer_class = LeadSerializer
    pagination_class = Pagination
    parser_classes = [JSONParser, MultiPartParser]
    queryset = Lead.objects.all()

    def list(self, request, *args, **kwargs):
        if wants_csv(request):  # every lead the filters select, streamed, not a page
            return leads_csv(campaign=get_object_or_404(Campaign, pk=self.kwargs["pk"]), leads=self.get_queryset())
        return super().list(request, *args, **kwargs)

    def get_queryset(self):
        campaign = get_object_or_404(Campaign, pk=self.kwargs["pk"])
        leads = Lead.objects.filter(campaign=campaign).order_by("-score", "id")
        wanted = query_param(self.request, "status", choices=Lead.Status.values)
        if wanted:
            leads = leads.filter(status=wanted)
        return leads_search(leads, query_param(self.request, "search"))

    @extend_schema(summary="A campaign's leads, best score first", parameters=[
        OpenApiParameter("status", str, enum=[*Lead.Status.values], description="Only leads in this status"),
        OpenApiParameter("format", str, enum=["json", "csv"], description="csv: every lead the filters select, "
                         "as a streamed CSV download (formulas neutralised), instead of a page of JSON"),
        OpenApiParameter("search", str, description="Words found in the email, name, company, job title or industry"),
    ])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=LEADS_REQUEST,
        responses={
            201: ImportReportSerializer, 200: ImportReportSerializer, 409: ImportReportSerializer,
            202: OpenApiResponse(ImportQueuedSerializer, description="A file above CAM_IMPORT_SYNC_MAX_KB: kept and "
                                 "queued for a worker; its progress and report at `url` (also the Location header)"),
            413: OpenApiResponse(inline_serializer("UploadTooLarge", {"detail": serializers.CharField()}),
                                 description="The file is larger than CAM_MAX_UPLOAD_MB"),
        },
        summary="Add leads: one lead, a JSON list, or a CSV file (multipart field 'file')",
        description="One lead: 201, or 400 with the field at fault, or 409 if the address is already in the "
        "campaign. A list or a file: 201 if any lead was added (else 200), with the same report as "
        "manage.py import_leads; bad rows are reported and never stop the good ones. A file larger than "
        "CAM_IMPORT_SYNC_MAX_KB (256 KB) is imported in the background: 202 with the import's id and URL.",
    )
    def post(self, request, pk):
        campaign = get_object_or_404(Campaign, pk=pk)
        now = timezone.now()
        try:
            upload = uploaded_file(request, "file")
        except UploadTooLarge as exc:
            raise UploadTooLargeError(str(exc)) from None
        if upload is not None and import_in_background(upload.size):
            try:
                job = import_job_queue(campaign=campaign, file=upload, name=upload.name, now=now, user=request.user)
            except LeadFileError as exc:
                raise ValidationError({"file": [str(exc)]}) from None
            url = reverse("api-import", args=[job.pk])
            return Response({"import_id": job.pk, "status": job.status, "url": url},
                            status=status.HTTP_202_ACCEPTED, headers={"Location": url})
        if upload is not None:
            try:
                report = leads_import_upload(campaign=campaign, file=upload, name=upload.name, now=now,
                                             by=request.user)
            except LeadFileError as exc:
                raise ValidationError({"file": [str(exc)]}) from None
        elif isinstance(request.data, list):
            if len(request.data) > MAX_LEADS_PER_REQUEST:
                raise ValidationError({"non_field_errors": [f"At most {MAX_LEADS_PER_REQUEST} leads per request."]})
            report = leads_insert(campaign=campaign, rows=mapping_rows(request.data), now=now,
                                  origin=f"API, by {request.user}")
        elif isinstance(request.data, dict):
            # One lead: DRF's field errors first, then the same row rules as a list or a file.
            LeadInputSerializer(data=request.data).is_valid(raise_exception=True)
            report = leads_insert(campaign=campaign, rows=mapping_rows([request.data]), now=now,
                                  origin=f"API, by {request.user}")
            if report.rejected:
                problem = report.rejected[0]
                raise ValidationError({problem.field: [problem.reason]})
            if report.duplicates:
                return Response(report.as_dict(), status=status.HTTP_409_CONFLICT)
        else:
            raise ValidationError({"non_field_errors": ["Send a lead object, a list of them, or a CSV as 'file'."]})
        code = status.HTTP_201_CREATED if report.imported else status.HTTP_200_OK
        return Response(report.as_dict(), status=code)


class LeadDetailView(generics.GenericAPIView):
    queryset = Lead.objects.all()
    serializer_class = LeadSerializer

    @extend_schema(responses=LeadSerializer, summary="One lead")
    def get(self, request, pk):
        return Response(LeadSerializer(get_object_or_404(Lead, pk=pk)).data)

    @extend_schema(request=LeadChangeSerializer, responses=LeadSerializer,
                   summary="Edit a lead: details, tags (do_not_contact, hot), or record a reply (status REPLIED)")
    def patch(self, request, pk):
        lead = get_object_or_404(Lead, pk=pk)
        changes = LeadChangeSerializer(data=request.data)
        changes.is_valid(raise_exception=True)
        lead = lead_update(lead=lead, data=changes.validated_data, now=timezone.now(), actor=Actor.staff(request.user))
        return Response(LeadSerializer(lead).data)


class LeadResumeView(generics.GenericAPIView):
    queryset = Lead.objects.all()
    serializer_class = LeadSerializer
    permission_classes = [ActionPermissions]

    @extend_schema(request=None, responses={200: LeadSerializer, 409: ErrorSerializer},
                   summary="Resume a stopped lead: it is due again (never sooner than its step's delay); "
                   "409 with the reason for suppressed, do-not-contact or finished leads, or an unresolved send")
    def post(self, request, pk):
        lead = lead_resume(lead=get_object_or_404(Lead, pk=pk), actor=Actor.staff(request.user), now=timezone.now())
        return Response(LeadSerializer(lead).data)


class LeadEventSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True,
                                        help_text="The staff user who made the change; empty for the engine.")

    class Meta:
        model = LeadEvent
        fields = ["id", "kind", "from_status", "to_status", "reason", "actor", "user", "created_at"]
        read_only_fields = fields


class LeadEventsView(generics.ListAPIView):
    serializer_class = LeadEventSerializer
    pagination_class = Pagination
    queryset = LeadEvent.objects.all()

    def get_queryset(self):
        lead = get_object_or_404(Lead, pk=self.kwargs["pk"])
        return LeadEvent.objects.filter(lead=lead).select_related("user").order_by("created_at", "id")

    @extend_schema(summary="A lead's history, oldest first: status changes, stops, sends, resumes, resolutions")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class CanViewLeads(permissions.BasePermission):
    """An import is leads being added: seeing it needs leads.view_lead (anonymous: 401)."""

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.has_perm("leads.view_lead"))


class ImportJobSerializer(serializers.ModelSerializer):
    campaign_id = serializers.IntegerField(read_only=True)
    report = serializers.SerializerMethodField()
    note = serializers.SerializerMethodField()

    class Meta:
        model = ImportJob
        fields = ["id", "campaign_id", "file_name", "status", "rows_read", "imported", "duplicates", "rejected",
                  "created_at", "started_at", "finished_at", "report", "error", "note"]
        read_only_fields = fields

    @extend_schema_field(ImportReportSerializer(allow_null=True, help_text="The import report, once done"))
    def get_report(self, job: ImportJob):
        return job.report if job.status == ImportJob.Status.DONE else None

    @extend_schema_field(serializers.CharField(
        help_text="What to know beyond the status, e.g. that no worker has taken the job for 30 s; else empty"))
    def get_note(self, job: ImportJob) -> str:
        return import_job_note(job, timezone.now())


class ImportJobView(generics.GenericAPIView):
    queryset = ImportJob.objects.all()
    serializer_class = ImportJobSerializer
    permission_classes = [CanViewLeads]

    @extend_schema(responses=ImportJobSerializer,
                   summary="A CSV import run in the background: its status, progress counters and, once done, its report")
    def get(self, request, pk):
        return Response(ImportJobSerializer(get_object_or_404(ImportJob, pk=pk)).data)
