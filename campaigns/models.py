from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.template import TemplateSyntaxError
from django.utils import timezone

from cam_project.validators import no_control_characters

CHANNEL_EMAIL = "email"
CHANNELS = ("email", "linkedin", "phone")


def validate_channels(value) -> None:
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ValidationError("Channels must be a list of names.")
    if not value:
        raise ValidationError("Choose at least one channel.")
    unknown = sorted(set(value) - set(CHANNELS))
    if unknown:
        raise ValidationError(
            f"Unknown channel(s): {', '.join(unknown)}. Choose from {', '.join(CHANNELS)}."
        )


def default_channels() -> list[str]:
    return [CHANNEL_EMAIL]


class Campaign(models.Model):
    name = models.CharField(max_length=200, validators=[no_control_characters])
    description = models.TextField(blank=True)
    target_niche = models.CharField(max_length=200, blank=True)
    service_key = models.CharField(
        max_length=100, blank=True, help_text="What you sell, e.g. web_design or seo."
    )
    # Upper bounds keep every accepted number inside the database's integer columns; the API
    # and the console validate with these same validators.
    target_clients = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(1_000_000)], help_text="Qualified leads wanted."
    )
    target_mrr = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(2_000_000_000)], help_text="Monthly revenue goal."
    )
    channels_enabled = models.JSONField(default=default_channels, validators=[validate_channels])
    max_emails_per_day = models.PositiveIntegerField(
        default=20, validators=[MinValueValidator(1), MaxValueValidator(100_000)], help_text="Daily quota of emails."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    paused_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=300, blank=True)
    resumed_at = models.DateTimeField(
        null=True, blank=True, help_text="Last resumed by staff: the failing-campaign rules wait a while after it."
    )

    sender_name = models.CharField(max_length=100, blank=True, validators=[no_control_characters])
    sender_email = models.EmailField(
        blank=True, help_text="From address; DEFAULT_FROM_EMAIL when blank."
    )
    qualification_threshold = models.FloatField(
        default=0.7,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="A lead scoring above this is QUALIFIED once contacted.",
    )
    max_attempts_per_lead = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(20)]
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(target_clients__gt=0), name="campaign_target_clients_positive"),
            models.CheckConstraint(condition=Q(max_emails_per_day__gt=0), name="campaign_quota_positive"),
            models.CheckConstraint(condition=Q(max_attempts_per_lead__gt=0), name="campaign_max_attempts_positive"),
            models.CheckConstraint(
                condition=Q(qualification_threshold__gte=0) & Q(qualification_threshold__lte=1),
                name="campaign_threshold_between_0_and_1",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def email_enabled(self) -> bool:
        return CHANNEL_EMAIL in (self.channels_enabled or [])


class MessageStep(models.Model):
    """One email of a campaign's sequence: step 1 is the first touch, the others follow-ups.

    Templates use Django template syntax ({{ first_name }}, {{ company }}, …); see
    outreach.messages for the variables and their fallbacks.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    delay_days = models.PositiveSmallIntegerField(
        default=3, help_text="Days to wait after the previous email (ignored for step 1)."
    )
    subject_template = models.CharField(max_length=300, validators=[no_control_characters])
    body_template = models.TextField()

    class Meta:
        ordering = ["campaign", "position"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "position"], name="message_step_unique_position"),
            models.CheckConstraint(condition=Q(position__gt=0), name="message_step_position_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} · step {self.position}"

    def clean(self) -> None:
        from outreach.messages import check_template

        errors = {}
        for field in ("subject_template", "body_template"):
            try:
                check_template(getattr(self, field))
            except TemplateSyntaxError as exc:
                errors[field] = f"Template error: {exc}"
        if errors:
            raise ValidationError(errors)
