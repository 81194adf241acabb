"""Outreach endpoints: a campaign's attempts, and the global suppression list."""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from cam_project.api import Pagination, query_param
from campaigns.models import Campaign
from leads.rows import email_normalise, email_syntax_error
from outreach.models import OutreachAttempt, Suppression
from outreach.services import suppression_add, suppression_remove


class AttemptSerializer(serializers.ModelSerializer):
    lead_email = serializers.CharField(source="lead.email", read_only=True)

    class Meta:
        model = OutreachAttempt
        fields = ["id", "campaign", "lead", "lead_email", "channel", "step", "status", "subject", "error",
                  "message_id", "created_at", "finished_at"]
        read_only_fields = fields


@extend_schema(
    parameters=[OpenApiParameter("status", str, enum=list(OutreachAttempt.Status.values))],
    summary="A campaign's outreach attempts, newest first",
)
class CampaignAttemptsView(generics.ListAPIView):
    serializer_class = AttemptSerializer
    pagination_class = Pagination
    queryset = OutreachAttempt.objects.all()

    def get_queryset(self):
        campaign = get_object_or_404(Campaign, pk=self.kwargs["pk"])
        attempts = OutreachAttempt.objects.filter(campaign=campaign).select_related("lead").order_by("-created_at", "-id")
        wanted = query_param(self.request, "status", choices=OutreachAttempt.Status.values)
        if wanted:
            attempts = attempts.filter(status=wanted)
        return attempts


class SuppressionSerializer(serializers.ModelSerializer):
    email = serializers.CharField(max_length=320)

    class Meta:
        model = Suppression
        fields = ["id", "email", "reason", "note", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_email(self, value):
        email = email_normalise(value)
        problem = email_syntax_error(email)
        if problem:
            raise serializers.ValidationError(problem)
        return email


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
