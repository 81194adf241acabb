"""What came back, for staff (SPEC §9): `GET /api/cam/inbound?kind=&campaign=&mailbox=&matched=`
lists the messages read from the mailboxes and the ESPs' webhooks, newest first; `PATCH
/api/cam/inbound/{id}` reclassifies one (`kind`) or records what its reply came to (`outcome`)."""

from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response

from cam_project.api import ErrorSerializer, ModelPermissions, Pagination, query_param
from leads.services import Actor
from outreach.models import InboundMessage
from outreach.replies import inbound_messages, inbound_reclassify, inbound_record_outcome


class InboundSerializer(serializers.ModelSerializer):
    mailbox_name = serializers.CharField(source="mailbox.name", default=None, read_only=True)
    lead_email = serializers.CharField(source="lead.email", default=None, read_only=True)
    lead_status = serializers.CharField(source="lead.status", default=None, read_only=True)
    campaign = serializers.SerializerMethodField(help_text="The campaign of the lead it is matched to; null: unmatched.")
    step = serializers.IntegerField(source="attempt.step", default=None, read_only=True,
                                    help_text="The step of the email it answers (matched by Message-ID).")
    reviewed_by = serializers.CharField(source="reviewed_by.username", default=None, read_only=True)

    class Meta:
        model = InboundMessage
        fields = ["id", "kind", "mailbox", "mailbox_name", "folder", "message_id", "from_email", "from_name", "to",
                  "subject", "sent_at", "received_at", "text", "bounce_hard", "bounce_recipient", "lead",
                  "lead_email", "lead_status", "campaign", "attempt", "step", "matched_by", "evidence", "action",
                  "outcome", "reviewed_by", "reviewed_at"]
        read_only_fields = fields

    def get_campaign(self, message) -> int | None:
        return message.lead.campaign_id if message.lead_id else None


class InboundChangeSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=InboundMessage.Kind.choices, required=False,
                                   help_text="What the message really is: its effects are undone where that is "
                                             "safe, then the new kind's follow.")
    outcome = serializers.ChoiceField(choices=InboundMessage.Outcome.choices, required=False,
                                      help_text="interested: the lead is QUALIFIED; not_interested: LOST.")

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields) if isinstance(self.initial_data, dict) else set()
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
        if not attrs:
            raise serializers.ValidationError({"non_field_errors": ["Give kind, outcome or both."]})
        return attrs


def _id_param(request, name: str) -> int | None:
    value = request.query_params.get(name, "")
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise serializers.ValidationError({name: ["An id."]})
    return int(value)


@extend_schema(
    parameters=[
        OpenApiParameter("kind", str, enum=InboundMessage.Kind.values, description="Only this kind."),
        OpenApiParameter("campaign", int, description="Only messages matched to this campaign's leads."),
        OpenApiParameter("mailbox", int, description="Only messages read from this mailbox."),
        OpenApiParameter("matched", bool, description="true: matched to a lead; false: unmatched only."),
    ],
    summary="Messages that came back (replies, auto-replies, bounces, unsubscribe requests), newest first",
)
class InboundListView(generics.ListAPIView):
    serializer_class = InboundSerializer
    permission_classes = [ModelPermissions]
    pagination_class = Pagination
    queryset = InboundMessage.objects.all()

    def get_queryset(self):
        matched = self.request.query_params.get("matched", "").lower()
        if matched not in ("", "true", "1", "false", "0"):
            raise serializers.ValidationError({"matched": ["true or false."]})
        return inbound_messages(
            campaign_id=_id_param(self.request, "campaign"), mailbox_id=_id_param(self.request, "mailbox"),
            kind=query_param(self.request, "kind", choices=InboundMessage.Kind.values),
            matched=None if not matched else matched in ("true", "1"),
        )


class InboundDetailView(generics.RetrieveAPIView):
    serializer_class = InboundSerializer
    permission_classes = [ModelPermissions]
    queryset = InboundMessage.objects.select_related("mailbox", "lead", "attempt", "reviewed_by")

    @extend_schema(request=InboundChangeSerializer, responses={200: InboundSerializer, 400: ErrorSerializer,
                                                               409: ErrorSerializer},
                   summary="Reclassify a message (kind) or record what its reply came to (outcome)")
    def patch(self, request, pk):
        message = get_object_or_404(InboundMessage, pk=pk)
        body = InboundChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        actor, now = Actor.staff(request.user), timezone.now()
        with transaction.atomic():  # both or neither
            if "kind" in body.validated_data:
                message = inbound_reclassify(message=message, kind=body.validated_data["kind"], now=now, actor=actor)
            if "outcome" in body.validated_data:
                message = inbound_record_outcome(message=message, outcome=body.validated_data["outcome"], now=now,
                                                 actor=actor)
        return Response(InboundSerializer(self.get_queryset().get(pk=message.pk)).data)
