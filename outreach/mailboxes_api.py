"""Mailbox endpoints (SPEC §8): list, create, read, change, delete, and the login check.

Passwords and the ESP's API key are write-only: never in an answer (`smtp_password_set` and the
like say whether one is stored), kept when a change leaves them out, cleared by an empty string.
"""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from cam_project.api import ActionPermissions, ErrorSerializer, ModelPermissions, Pagination
from campaigns.models import Campaign
from outreach.limits import mailbox_today
from outreach.mailboxes import (
    MailboxInUse,
    mailbox_check,
    mailbox_delete,
    mailbox_save,
    mailbox_settings_errors,
)
from outreach.models import Mailbox

FIELDS = [
    "id", "name", "kind", "from_name", "from_email", "smtp_host", "smtp_port", "smtp_username", "smtp_password",
    "smtp_password_set", "smtp_security", "esp", "esp_api_key", "esp_api_key_set", "esp_settings", "imap_host",
    "imap_port", "imap_username", "imap_password", "imap_password_set", "imap_security", "imap_inbox", "imap_sent",
    "daily_cap", "warmup_start", "warmup_step", "warmup_started_on", "min_gap_seconds", "gap_jitter_seconds",
    "window_days", "window_start", "window_end", "timezone", "campaigns", "active", "last_error", "disabled_at",
    "today",
]


@extend_schema_field({"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$", "example": "09:00"})
class ClockField(serializers.TimeField):
    """A time of day as "HH:MM" (SPEC §8), in and out; the schema says so (OpenAPI's "time"
    format would mean "HH:MM:SS" with an offset)."""

    def __init__(self, **kwargs):
        super().__init__(format="%H:%M", input_formats=["%H:%M"], **kwargs)


def _secret(help_text: str) -> serializers.CharField:
    return serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=500,
                                 trim_whitespace=False, style={"input_type": "password"}, help_text=help_text)


class TodaySerializer(serializers.Serializer):
    sent = serializers.IntegerField(help_text="Sends through it today (its time zone's day), all campaigns.")
    cap = serializers.IntegerField(help_text="Today's cap: the daily cap, or less while warming up.")
    warmup_day = serializers.IntegerField(allow_null=True, help_text="Day of the warm-up; null once warmed up.")


class MailboxSerializer(serializers.ModelSerializer):
    smtp_password = _secret("Write-only; left out: kept; empty: cleared.")
    imap_password = _secret("Write-only; left out: kept; empty: cleared.")
    esp_api_key = _secret("Write-only: the ESP's API key (Postmark: the server token).")
    smtp_password_set = serializers.SerializerMethodField()
    imap_password_set = serializers.SerializerMethodField()
    esp_api_key_set = serializers.SerializerMethodField()
    window_days = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=6), min_length=1,
                                        max_length=7, required=False, help_text="Weekdays, Monday 0 … Sunday 6.")
    window_start = ClockField(required=False)
    window_end = ClockField(required=False, help_text="Before window_start: the window crosses midnight. Equal: all day.")
    esp_settings = serializers.DictField(child=serializers.CharField(max_length=500), required=False,
                                         help_text="Only api_url and sender_domain (Mailgun).")
    campaigns = serializers.PrimaryKeyRelatedField(many=True, queryset=Campaign.objects.all(), required=False,
                                                   help_text="Campaigns sending through this mailbox.")
    today = serializers.SerializerMethodField()

    class Meta:
        model = Mailbox
        fields = FIELDS
        read_only_fields = ["id", "last_error", "disabled_at"]

    def get_smtp_password_set(self, mailbox) -> bool:
        return bool(mailbox.smtp_password)

    def get_imap_password_set(self, mailbox) -> bool:
        return bool(mailbox.imap_password)

    def get_esp_api_key_set(self, mailbox) -> bool:
        return bool(mailbox.esp_api_key)

    @extend_schema_field(TodaySerializer)
    def get_today(self, mailbox) -> dict:
        today = mailbox_today(mailbox=mailbox, now=self.context.get("now") or timezone.now())
        return {"sent": today.sent, "cap": today.cap, "warmup_day": today.warmup_day}

    def validate_window_days(self, days):
        if len(set(days)) != len(days):
            raise serializers.ValidationError("Each weekday once.")
        return sorted(days)

    def validate(self, attrs):
        """The mailbox as it will be (a change may give only part of it) must be usable."""
        errors = mailbox_settings_errors(
            lambda name: attrs[name] if name in attrs else getattr(self.instance, name, None))
        if errors:
            raise serializers.ValidationError({name: [error] for name, error in errors.items()})
        return attrs

    def create(self, validated):
        campaigns = validated.pop("campaigns", None)
        return mailbox_save(mailbox=Mailbox(), data=validated, campaigns=campaigns)

    def update(self, mailbox, validated):
        campaigns = validated.pop("campaigns", None)
        return mailbox_save(mailbox=mailbox, data=validated, campaigns=campaigns)


class MailboxListView(generics.ListCreateAPIView):
    serializer_class = MailboxSerializer
    permission_classes = [ModelPermissions]
    pagination_class = Pagination
    queryset = Mailbox.objects.prefetch_related("campaigns").order_by("name", "id")


class MailboxDetailView(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = MailboxSerializer
    permission_classes = [ModelPermissions]
    queryset = Mailbox.objects.prefetch_related("campaigns")

    @extend_schema(responses={204: None, 409: ErrorSerializer})
    def delete(self, request, *args, **kwargs):
        try:
            mailbox_delete(mailbox=self.get_object())
        except MailboxInUse as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField(allow_null=True, help_text="null: not checked (not set, or an ESP's key).")
    detail = serializers.CharField()


class MailboxCheckSerializer(serializers.Serializer):
    smtp = CheckSerializer()
    imap = CheckSerializer()


class MailboxTestView(APIView):
    permission_classes = [ActionPermissions]
    queryset = Mailbox.objects.all()

    @extend_schema(request=None, responses={200: MailboxCheckSerializer, 404: ErrorSerializer},
                   summary="Log in to the mailbox's SMTP and IMAP servers and say what fails (nothing is sent)")
    def post(self, request, pk):
        mailbox = get_object_or_404(Mailbox, pk=pk)
        checks = mailbox_check(mailbox=mailbox)
        return Response({name: {"ok": check.ok, "detail": check.detail} for name, check in checks.items()})

