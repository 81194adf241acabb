"""Outreach endpoints: a campaign's attempts (and resolving interrupted sends), and the global
suppression list."""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from cam_project.api import ActionPermissions, CSVExportMixin, ErrorSerializer, Pagination, query_param, wants_csv
from campaigns.models import Campaign
from leads.rows import email_normalise, email_syntax_error
from outreach.models import OutreachAttempt, Suppression
from leads.services import Actor
from outreach.attention import attempt_resolve
from outreach.erasure import erasure_run
from outreach.exports import attempts_csv
from outreach.suppression import suppression_add, suppression_remove


class AttemptSerializer(serializers.ModelSerializer):
    lead_email = serializers.CharField(source="lead.email", read_only=True)
    resolution = serializers.CharField(read_only=True, help_text="How staff resolved a claimed or unknown send: "
                                       "sent, not_sent, or empty.")
    resolved_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True,
                                               help_text="The staff user who resolved a claimed or unknown send.")

    class Meta:
        model = OutreachAttempt
        fields = ["id", "campaign", "lead", "lead_email", "channel", "step", "status", "subject", "body", "error",
                  "message_id", "created_at", "finished_at", "resolution", "resolved_by", "resolved_at"]
        read_only_fields = fields


def status_list_param(request) -> list[str]:
    """?status=claimed,unknown: one status or several, each checked like a field."""
    raw = query_param(request, "status", max_length=200)
    wanted = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [part for part in wanted if part not in OutreachAttempt.Status.values]
    if unknown:
        choices = ", ".join(OutreachAttempt.Status.values)
        raise ValidationError({"status": [f'"{unknown[0][:40]}" is not a valid choice ({choices}).']})
    return wanted


@extend_schema(
    parameters=[OpenApiParameter(
        "status", str, description="One status or several, comma-separated: claimed,unknown lists the sends "
        "needing attention (any day). One of: " + ", ".join(OutreachAttempt.Status.values)),
        OpenApiParameter("format", str, enum=["json", "csv"], description="csv: every send the filters select, "
                         "as a streamed CSV download, instead of a page of JSON")],
    summary="A campaign's outreach attempts, newest first",
)
class CampaignAttemptsView(CSVExportMixin, generics.ListAPIView):
    serializer_class = AttemptSerializer
    pagination_class = Pagination
    queryset = OutreachAttempt.objects.all()

    def list(self, request, *args, **kwargs):
        if wants_csv(request):  # every send the filters select, streamed, not a page
            return attempts_csv(campaign=get_object_or_404(Campaign, pk=self.kwargs["pk"]),
                                attempts=self.get_queryset())
        return super().list(request, *args, **kwargs)

    def get_queryset(self):
        campaign = get_object_or_404(Campaign, pk=self.kwargs["pk"])
        attempts = (OutreachAttempt.objects.filter(campaign=campaign).select_related("lead", "resolved_by")
                    .order_by("-created_at", "-id"))
        wanted = status_list_param(self.request)
        if wanted:
            attempts = attempts.filter(status__in=wanted)
        return attempts


class ResolveSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=OutreachAttempt.Resolution.choices,
                                      help_text="sent: the lead moves on; not_sent: the step may be sent again.")


class AttemptResolveView(generics.GenericAPIView):
    """Staff resolve a send left claimed or unknown (SPEC §6)."""

    queryset = OutreachAttempt.objects.all()
    serializer_class = ResolveSerializer
    permission_classes = [ActionPermissions]

    @extend_schema(request=ResolveSerializer, responses={200: AttemptSerializer, 409: ErrorSerializer},
                   summary="Resolve a claimed or unknown send as sent or not sent (409 with the reason if refused)")
    def post(self, request, pk):
        attempt = get_object_or_404(OutreachAttempt, pk=pk)
        body = ResolveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        attempt = attempt_resolve(attempt=attempt, outcome=body.validated_data["outcome"],
                                  actor=Actor.staff(request.user), now=timezone.now())
        return Response(AttemptSerializer(attempt).data)


def address_checked(value: str) -> str:
    """An address as suppressions and leads store it (trimmed, lower-case), or a field error."""
    email = email_normalise(value)
    problem = email_syntax_error(email)
    if problem:
        raise serializers.ValidationError(problem)
    return email


class SuppressionSerializer(serializers.ModelSerializer):
    email = serializers.CharField(max_length=320)

    class Meta:
        model = Suppression
        fields = ["id", "email", "reason", "note", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_email(self, value):
        return address_checked(value)


class SuppressionsView(generics.ListAPIView):
    serializer_class = SuppressionSerializer
    pagination_class = Pagination
    queryset = Suppression.objects.all()

    def get_queryset(self):
        suppressions = Suppression.objects.order_by("-created_at", "-id")
        search = query_param(self.request, "search", max_length=254).strip()
        return suppressions.filter(email__icontains=search) if search else suppressions

    @extend_schema(parameters=[OpenApiParameter("search", str, description="Part of the address")],
                   summary="The suppression list (addresses no campaign may email)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=SuppressionSerializer, responses={201: SuppressionSerializer, 200: SuppressionSerializer},
                   summary="Suppress an address everywhere (its leads stop at once); 200 if it already was")
    def post(self, request):
        body = SuppressionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        suppression, created = suppression_add(now=timezone.now(), **body.validated_data)
        return Response(SuppressionSerializer(suppression).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(parameters=[OpenApiParameter("email", str, required=True)], request=None, responses={204: None},
                   operation_id="cam_suppressions_destroy_by_email",
                   summary="Remove an address from the suppression list")
    def delete(self, request):
        email = email_normalise(query_param(request, "email", max_length=320))
        if not email:
            raise ValidationError({"email": ["This query parameter is required."]})
        suppression_remove(suppression=get_object_or_404(Suppression, email=email))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SuppressionDetailView(generics.GenericAPIView):
    queryset = Suppression.objects.all()
    serializer_class = SuppressionSerializer

    @extend_schema(summary="One suppressed address")
    def get(self, request, pk):
        return Response(SuppressionSerializer(get_object_or_404(Suppression, pk=pk)).data)

    @extend_schema(responses={204: None}, summary="Remove an address from the suppression list")
    def delete(self, request, pk):
        suppression_remove(suppression=get_object_or_404(Suppression, pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ErasureRequestSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=320, help_text="The person's address, as any campaign holds it.")

    def validate_email(self, value):
        return address_checked(value)


class ErasureReportSerializer(serializers.Serializer):
    email = serializers.CharField()
    leads_deleted = serializers.IntegerField()
    campaigns = serializers.ListField(child=serializers.CharField(), help_text="Campaigns that held the person.")
    events_deleted = serializers.IntegerField()
    attempts_scrubbed = serializers.IntegerField(
        help_text="Attempts kept without their lead, subject, body or error: the day's counts depend on them.")
    import_reports_scrubbed = serializers.IntegerField()
    runs_scrubbed = serializers.IntegerField()
    inbound_deleted = serializers.IntegerField()
    suppression = serializers.CharField(help_text="\"added\", or why the address was already suppressed.")
    source_files = serializers.ListField(
        child=serializers.CharField(),
        help_text="CSV files of lead sources that may still hold the address (it is never imported again).")


class ErasurePermission(permissions.BasePermission):
    message = "Erasing a person needs the permissions leads.delete_lead and outreach.add_suppression."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated
                    and request.user.has_perms(["leads.delete_lead", "outreach.add_suppression"]))


class ErasureView(APIView):
    permission_classes = [ErasurePermission]

    @extend_schema(request=ErasureRequestSerializer, responses={200: ErasureReportSerializer},
                   summary="Erase a person (GDPR): their leads, their attempts' personal fields; keeps a suppression")
    def post(self, request):
        body = ErasureRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        report = erasure_run(email=body.validated_data["email"], now=timezone.now(), actor=Actor.staff(request.user))
        return Response(report.as_dict())
