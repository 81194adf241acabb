from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.template import TemplateSyntaxError
from django.utils import timezone

from cam_project.validators import no_control_characters, postal_address_text, time_zone

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
    live = models.BooleanField(
        default=False,
        help_text="Scheduled cycles send real email only for live campaigns; the others run dry.",
    )
    live_since = models.DateTimeField(null=True, blank=True)
    apollo_credits_per_day = models.PositiveIntegerField(
        default=25, validators=[MaxValueValidator(100_000)],
        help_text="Apollo.io credits the campaign may spend a day revealing emails (one per person revealed).",
    )
    dropcontact_credits_per_day = models.PositiveIntegerField(
        default=100, validators=[MaxValueValidator(100_000)],
        help_text="Dropcontact credits the campaign may spend a day (one per lead submitted with its email).",
    )
    postal_address = models.TextField(
        blank=True, max_length=500, validators=[postal_address_text],
        help_text="The sender's postal address for the footer of every email; CAM_POSTAL_ADDRESS when blank. "
                  "A campaign goes live only with one.",
    )

    timezone = models.CharField(
        max_length=64, blank=True, validators=[time_zone],
        help_text="Where its leads are, for send windows: used for leads without their own time zone; "
                  "blank: the mailbox's.",
    )

    class LawfulBasis(models.TextChoices):
        LEGITIMATE_INTEREST = "legitimate_interest", "Legitimate interest"
        CONSENT = "consent", "Consent"
        CONTRACT = "contract", "Contract"
        OTHER = "other", "Other (say which in the note)"

    lawful_basis = models.CharField(
        max_length=30, choices=LawfulBasis.choices, default=LawfulBasis.LEGITIMATE_INTEREST,
        help_text="The GDPR basis on which the campaign processes its leads' personal data.",
    )
    lawful_basis_note = models.TextField(
        blank=True, max_length=2000,
        help_text="Why the basis holds, e.g. the balancing test for legitimate interest.",
    )

    archived_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="Archived: hidden from the dashboard's default view and from every cycle, kept with its history.",
    )

    class QualifyOn(models.TextChoices):
        SCORE = "score", "Score: a contacted lead that is hot or above the threshold"
        REPLY = "reply", "Reply: only when staff mark a reply as interested"

    qualify_on = models.CharField(
        max_length=10, choices=QualifyOn.choices, default=QualifyOn.SCORE,
        help_text="Score: a lead is QUALIFIED when it is emailed and is hot or scores above the threshold "
                  "(no follow-ups). Reply: a lead is QUALIFIED only when staff mark its reply as interested; "
                  "it keeps its follow-ups until it replies.",
    )
    stop_company_on_reply = models.BooleanField(
        default=False,
        help_text="A reply from anyone at a company's domain stops this campaign's email to everyone there "
                  "(free-mail domains such as gmail.com excepted).",
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


class CycleLease(models.Model):
    """Who runs the campaign's cycle now (SPEC §7): one holder at a time across processes and
    machines. Taken by a conditional update (campaigns.runs), never by reading then writing."""

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, primary_key=True, related_name="lease")
    holder = models.CharField(max_length=200, blank=True, help_text="host:pid:id of the cycle running; empty when free.")
    taken_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="After this, another cycle may take the lease over.")

    def __str__(self) -> str:
        return f"{self.campaign_id}: {self.holder or 'free'}"


class CycleRun(models.Model):
    """One cycle of a campaign, as it ran: who started it, dry or live, and its result."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        COMMAND = "command"
        API = "api"
        CONSOLE = "console"
        ADMIN = "admin"
        SEND = "send"  # the send task: only mail that has become allowed

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    dry_run = models.BooleanField()
    holder = models.CharField(max_length=200, help_text="The lease holder that ran it.")
    requested_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Who asked for it from the API or the console.",
    )
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True, help_text="Empty while it runs, or if it was killed.")
    sent = models.PositiveIntegerField(default=0, help_text="Sent, or in a dry run what would be sent.")
    failed = models.PositiveIntegerField(default=0)
    unknown = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    result = models.JSONField(null=True, blank=True, help_text="The cycle's result object (previews without bodies).")

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["campaign", "-started_at"], name="cycle_run_campaign_recent")]

    def __str__(self) -> str:
        return f"{self.campaign_id} · {self.trigger} · {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
