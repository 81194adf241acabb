from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from campaigns.models import CHANNEL_EMAIL, Campaign
from leads.models import Lead


class OutreachAttempt(models.Model):
    """One email of one step to one lead.

    CLAIMED is written (and counted against the quota) before the mail server is called, then
    becomes SENT, FAILED (the server answered no: nothing was sent) or UNKNOWN (the connection
    broke mid-send: the mail may have left). A row left CLAIMED means the process died mid-send.
    CLAIMED and UNKNOWN rows are shown to staff and never retried.
    """

    class Status(models.TextChoices):
        CLAIMED = "claimed", "Claimed (send in progress or interrupted)"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (not sent: refused, or the message could not be built)"
        UNKNOWN = "unknown", "Unknown (connection lost after the message was handed over)"
        SKIPPED = "skipped", "Skipped"
        NOT_SENT = "not_sent", "Not sent (resolved by staff)"

    class Resolution(models.TextChoices):
        SENT = "sent", "Sent"
        NOT_SENT = "not_sent", "Not sent"

    # Attempts that count against the daily quota: mail that left or may have left. A send
    # that certainly did not leave (refused, or failed before the message was handed over)
    # uses no quota (SPEC §6).
    QUOTA_STATUSES = (Status.CLAIMED, Status.SENT, Status.UNKNOWN)
    # Attempts staff must resolve as sent or not sent.
    ATTENTION_STATUSES = (Status.CLAIMED, Status.UNKNOWN)
    # Attempts that make a second send of the same step impossible.
    SENDING_STATUSES = (Status.CLAIMED, Status.SENT, Status.UNKNOWN)

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="attempts")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="attempts")
    channel = models.CharField(max_length=20, default=CHANNEL_EMAIL)
    step = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices)
    subject = models.CharField(max_length=300, blank=True)
    body = models.TextField(blank=True, help_text="The text as sent.")
    error = models.TextField(blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A claimed or unknown send resolved by staff: what they decided, who and when.
    resolution = models.CharField(max_length=10, choices=Resolution.choices, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["lead", "channel", "step"],
                condition=Q(status__in=["claimed", "sent", "unknown"]),
                name="attempt_one_send_per_lead_step",
            ),
        ]
        indexes = [
            # Today's quota count and the campaign's attempt history.
            models.Index(fields=["campaign", "created_at"], name="attempt_campaign_created"),
            # Sends needing staff attention (claimed, unknown): few rows, any day.
            models.Index(
                fields=["campaign", "created_at"], name="attempt_needs_attention",
                condition=Q(status__in=["claimed", "unknown"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.lead} step {self.step} {self.status}"


class Suppression(models.Model):
    """A global do-not-contact address, honoured by every campaign."""

    class Reason(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained (spam report)"
        MANUAL = "manual", "Added by staff"

    email = models.EmailField(max_length=254, unique=True, help_text="Stored trimmed and lower-case.")
    reason = models.CharField(max_length=20, choices=Reason.choices, default=Reason.MANUAL)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(email=Lower("email")), name="suppression_email_lower_case"),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.reason})"
