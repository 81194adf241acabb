from datetime import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from encrypted_model_fields.fields import EncryptedCharField

from cam_project.validators import no_control_characters, time_zone
from campaigns.models import CHANNEL_EMAIL, Campaign
from leads.models import Lead

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def validate_window_days(value) -> None:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise ValidationError("Weekdays must be a list of numbers, Monday 0 to Sunday 6.")
    if not value:
        raise ValidationError("Choose at least one weekday.")
    if any(d < 0 or d > 6 for d in value) or len(set(value)) != len(value):
        raise ValidationError("Weekdays are the numbers 0 (Monday) to 6 (Sunday), each once.")


def default_window_days() -> list[int]:
    return [0, 1, 2, 3, 4]


def default_time_zone() -> str:
    return settings.TIME_ZONE


# ESPs a mailbox can send through (django-anymail backends), and the name each backend gives
# its secret.
ESP_SECRET_ARGUMENT = {
    "postmark": "server_token",
    "sendgrid": "api_key",
    "mailgun": "api_key",
    "brevo": "api_key",
    "resend": "api_key",
    "sparkpost": "api_key",
    "mailersend": "api_token",
}


class Mailbox(models.Model):
    """A sending account (SPEC §8): an SMTP login, or an ESP's API through django-anymail, with
    its own limits. Its daily cap counts every campaign that sends through it, in its own time
    zone's day; the cap ramps up from `warmup_start` by `warmup_step` a day. Sends are at least
    `min_gap_seconds` (plus up to `gap_jitter_seconds`) apart, and only inside the window, read
    in the lead's time zone. Limits are checked when a send is claimed (outreach.limits)."""

    class Kind(models.TextChoices):
        SMTP = "smtp", "SMTP server"
        ESP = "esp", "Email service provider (API, through django-anymail)"

    class Security(models.TextChoices):
        STARTTLS = "starttls", "STARTTLS"
        SSL = "ssl", "SSL/TLS"
        NONE = "none", "None (plain text)"

    class Esp(models.TextChoices):
        POSTMARK = "postmark", "Postmark"
        SENDGRID = "sendgrid", "SendGrid"
        MAILGUN = "mailgun", "Mailgun"
        BREVO = "brevo", "Brevo"
        RESEND = "resend", "Resend"
        SPARKPOST = "sparkpost", "SparkPost"
        MAILERSEND = "mailersend", "MailerSend"

    name = models.CharField(max_length=100, unique=True, validators=[no_control_characters])
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SMTP)
    from_name = models.CharField(max_length=100, blank=True, validators=[no_control_characters])
    from_email = models.EmailField(max_length=254)

    smtp_host = models.CharField(max_length=255, blank=True, validators=[no_control_characters])
    smtp_port = models.PositiveIntegerField(default=587, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    smtp_username = models.CharField(max_length=255, blank=True, validators=[no_control_characters])
    smtp_password = EncryptedCharField(max_length=500, blank=True)
    smtp_security = models.CharField(max_length=10, choices=Security.choices, default=Security.STARTTLS)

    esp = models.CharField(max_length=20, choices=Esp.choices, blank=True)
    esp_api_key = EncryptedCharField(max_length=500, blank=True)
    # Other settings of the anymail backend: {"sender_domain": …} for Mailgun, {"api_url": …}.
    esp_settings = models.JSONField(default=dict, blank=True)

    imap_host = models.CharField(max_length=255, blank=True, validators=[no_control_characters])
    imap_port = models.PositiveIntegerField(default=993, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    imap_username = models.CharField(max_length=255, blank=True, validators=[no_control_characters])
    imap_password = EncryptedCharField(max_length=500, blank=True)
    imap_security = models.CharField(max_length=10, choices=Security.choices, default=Security.SSL)
    imap_inbox = models.CharField(max_length=200, default="INBOX", validators=[no_control_characters])
    imap_sent = models.CharField(max_length=200, default="Sent", validators=[no_control_characters])

    daily_cap = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(10_000)],
        help_text="Most emails a day through this mailbox, all campaigns together.",
    )
    warmup_start = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(10_000)],
        help_text="Cap on the first day of warm-up; 0: no warm-up, the full cap from the start.",
    )
    warmup_step = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(10_000)], help_text="Added to the warm-up cap each day."
    )
    warmup_started_on = models.DateField(default=timezone.localdate, help_text="Day 1 of the warm-up.")
    min_gap_seconds = models.PositiveIntegerField(
        default=120, validators=[MaxValueValidator(86_400)], help_text="Least time between two sends."
    )
    gap_jitter_seconds = models.PositiveIntegerField(
        default=60, validators=[MaxValueValidator(86_400)],
        help_text="A random extra wait of up to this many seconds after each send.",
    )
    window_days = models.JSONField(default=default_window_days, validators=[validate_window_days],
                                   help_text="Weekdays sends may go out: 0 Monday … 6 Sunday.")
    window_start = models.TimeField(default=time(9, 0))
    window_end = models.TimeField(
        default=time(17, 0), help_text="Before the start: the window crosses midnight. Equal: all day."
    )
    campaigns = models.ManyToManyField(Campaign, related_name="mailboxes", blank=True)

    active = models.BooleanField(default=True)
    last_error = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True, help_text="When a failed login switched it off.")
    # The earliest the next send may be claimed: the gap (and its jitter) after the last one.
    next_send_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    # Last among the fields: the name hides django.utils.timezone in the rest of the class body.
    timezone = models.CharField(
        max_length=64, default=default_time_zone, validators=[time_zone],
        help_text="The mailbox's day (its cap) and its window for leads and campaigns without a time zone.",
    )

    class Meta:
        ordering = ["name", "id"]
        verbose_name_plural = "mailboxes"
        constraints = [
            models.CheckConstraint(condition=Q(daily_cap__gt=0), name="mailbox_cap_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.from_email}>"

    @property
    def has_imap(self) -> bool:
        return bool(self.imap_host)


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
    # Kept (without its personal fields) when the person is erased: today's counts stay true.
    lead = models.ForeignKey(Lead, on_delete=models.SET_NULL, null=True, blank=True, related_name="attempts")
    # The mailbox it went through; empty: the environment's EMAIL_* settings. A mailbox that
    # sent cannot be deleted (its caps and threads depend on these rows): deactivate it.
    mailbox = models.ForeignKey(Mailbox, on_delete=models.PROTECT, null=True, blank=True, related_name="attempts")
    channel = models.CharField(max_length=20, default=CHANNEL_EMAIL)
    step = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices)
    subject = models.CharField(max_length=300, blank=True)
    body = models.TextField(blank=True, help_text="The text as sent.")
    error = models.TextField(blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    # The ESP's id of the message (anymail's message_id), for its webhooks.
    provider_message_id = models.CharField(max_length=255, blank=True)
    # A hard bounce: refused at RCPT, or reported later (bounce protection counts these).
    bounced_at = models.DateTimeField(null=True, blank=True)
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
            # A mailbox's sends today, across campaigns.
            models.Index(fields=["mailbox", "created_at"], name="attempt_mailbox_created"),
            # Answers and bounces are matched by the Message-ID CAM gave the email.
            models.Index(fields=["message_id"], name="attempt_message_id"),
            # ESP webhooks name the message by the ESP's id.
            models.Index(fields=["provider_message_id"], name="attempt_provider_message_id"),
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


class InboxState(models.Model):
    """Where the inbox reader stopped in one folder of a mailbox (SPEC §9): the folder's
    UIDVALIDITY and the last UID read. A new UIDVALIDITY means the server renumbered the folder:
    reading starts again from its first message, and what was stored before is recognised by
    its Message-ID."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="inbox_states")
    folder = models.CharField(max_length=200)
    uidvalidity = models.BigIntegerField(null=True, blank=True)
    last_uid = models.BigIntegerField(default=0)
    polled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["mailbox", "folder"], name="inbox_state_unique_folder")]

    def __str__(self) -> str:
        return f"{self.mailbox_id} {self.folder} uid>{self.last_uid}"


class InboundMessage(models.Model):
    """A message that came back (SPEC §9), read from a mailbox's IMAP folder or posted by an
    ESP's inbound webhook: stored once (unique per mailbox, folder, UIDVALIDITY and UID, or per
    provider event, so two readers never apply it twice), matched to the attempt it answers
    (In-Reply-To / References) or to a lead by its sender, classified and acted on."""

    class Kind(models.TextChoices):
        REPLY = "reply", "Reply"
        AUTO_REPLY = "auto_reply", "Auto-reply (out of office)"
        BOUNCE = "bounce", "Bounce"
        UNSUBSCRIBE = "unsubscribe", "Unsubscribe request"

    class Outcome(models.TextChoices):
        INTERESTED = "interested", "Interested (qualified)"
        NOT_INTERESTED = "not_interested", "Not interested (lost)"

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, null=True, blank=True, related_name="inbound")
    folder = models.CharField(max_length=200, blank=True)
    uidvalidity = models.BigIntegerField(null=True, blank=True)
    uid = models.BigIntegerField(null=True, blank=True)
    provider_event_id = models.CharField(max_length=300, blank=True,
                                         help_text="An ESP webhook's event id: the same event posted again is ignored.")
    message_id = models.CharField(max_length=998, blank=True)
    from_email = models.CharField(max_length=254, blank=True)
    from_name = models.CharField(max_length=200, blank=True)
    to = models.CharField(max_length=1000, blank=True)
    subject = models.CharField(max_length=1000, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="The message's Date header.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    bounce_hard = models.BooleanField(default=False, help_text="A bounce that will not pass (5.x.x).")
    bounce_recipient = models.CharField(max_length=254, blank=True)
    lead = models.ForeignKey(Lead, on_delete=models.SET_NULL, null=True, blank=True, related_name="inbound")
    attempt = models.ForeignKey(OutreachAttempt, on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="inbound")
    matched_by = models.CharField(max_length=20, blank=True, help_text="message_id, recipient, sender, or empty: unmatched.")
    text = models.TextField(blank=True, help_text="The new text, without the quoted history.")
    # The headers (or words) that decided the kind, so staff can see why.
    evidence = models.JSONField(default=dict, blank=True)
    action = models.CharField(max_length=500, blank=True, help_text="What CAM did about it.")
    # What acting on it changed, so a reclassification can undo it where that is safe.
    effects = models.JSONField(default=dict, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "folder", "uidvalidity", "uid"], name="inbound_unique_uid"),
            models.UniqueConstraint(fields=["provider_event_id"], condition=~Q(provider_event_id=""),
                                    name="inbound_unique_provider_event"),
        ]
        indexes = [
            models.Index(fields=["from_email"], name="inbound_from"),
            models.Index(fields=["kind", "-received_at"], name="inbound_kind_recent"),
            models.Index(fields=["mailbox", "message_id"], name="inbound_mailbox_message_id"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} from {self.from_email}: {self.subject[:60]}"
