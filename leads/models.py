from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.conf import settings
from django.utils import timezone

from cam_project.validators import no_control_characters, time_zone

from campaigns.models import Campaign

TAG_HOT = "hot"
TAG_DO_NOT_CONTACT = "do_not_contact"


class LeadSource(models.Model):
    """Where a campaign's leads come from: a CSV file, or an Apollo search (leads.importing.leads_discover)."""

    class Kind(models.TextChoices):
        CSV = "csv", "CSV file"
        APOLLO = "apollo", "Apollo.io people search"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="lead_sources")
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    settings = models.JSONField(
        default=dict, blank=True,
        help_text='For CSV: {"path": "<file under CAM_IMPORT_DIR>"}. For Apollo: its search filters '
                  '(person_titles, person_seniorities, …) and per_cycle (SPEC §10).',
    )
    # Where an API source stopped (Apollo: the search page and how far into it, whether the
    # search is exhausted, until when Apollo asked to wait). Written only by the source; reset
    # when the settings change.
    state = models.JSONField(default=dict, blank=True, editable=False)
    active = models.BooleanField(default=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # The version (size and modification time) of the file whose rejected rows were last
    # reported: the same bad rows are reported once per version, not every cycle.
    reported_file_version = models.CharField(max_length=100, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["campaign", "id"]

    def __str__(self) -> str:
        return self.name or f"{self.get_kind_display()} #{self.pk}"


class Lead(models.Model):
    class Status(models.TextChoices):
        NEW = "NEW", "New"
        ENRICHED = "ENRICHED", "Enriched"
        CONTACTED = "CONTACTED", "Contacted"
        REPLIED = "REPLIED", "Replied"
        QUALIFIED = "QUALIFIED", "Qualified"
        LOST = "LOST", "Lost"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="leads")
    source = models.ForeignKey(
        LeadSource, on_delete=models.SET_NULL, null=True, blank=True, related_name="leads"
    )
    email = models.EmailField(max_length=254, help_text="Stored trimmed and lower-case.")
    first_name = models.CharField(max_length=100, blank=True, validators=[no_control_characters])
    last_name = models.CharField(max_length=100, blank=True, validators=[no_control_characters])
    company = models.CharField(max_length=200, blank=True, validators=[no_control_characters])
    job_title = models.CharField(max_length=200, blank=True, validators=[no_control_characters])
    company_size = models.CharField(max_length=50, blank=True, validators=[no_control_characters])
    industry = models.CharField(max_length=100, blank=True, validators=[no_control_characters])
    city = models.CharField(max_length=100, blank=True, validators=[no_control_characters])
    country = models.CharField(max_length=100, blank=True, validators=[no_control_characters])
    linkedin_url = models.CharField(max_length=300, blank=True, validators=[no_control_characters])
    website = models.CharField(max_length=300, blank=True, validators=[no_control_characters])
    # The record's id at an API source ("apollo:<person id>"): a person already here is never
    # revealed (paid for) again.
    external_id = models.CharField(max_length=100, blank=True, editable=False)
    # Set while a provider (Dropcontact) works on the lead: it is not emailed or submitted again.
    enrichment_request = models.ForeignKey(
        "EnrichmentRequest", on_delete=models.SET_NULL, null=True, blank=True, related_name="leads", editable=False
    )

    # Where the person's data came from and when (GDPR): kept when the source is deleted.
    origin = models.CharField(max_length=300, blank=True, editable=False,
                              help_text="e.g. CSV file leads.csv, Apollo.io search, API.")
    collected_at = models.DateTimeField(default=timezone.now, editable=False)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    score = models.FloatField(default=0.0)
    tags = models.JSONField(default=list, blank=True)
    source_data = models.JSONField(
        default=dict, blank=True, help_text="Extra fields the source gave (columns we do not map)."
    )
    enrichment = models.JSONField(default=dict, blank=True)
    email_verification = models.JSONField(default=dict, blank=True)
    email_valid = models.BooleanField(null=True, blank=True)

    attempt_count = models.PositiveSmallIntegerField(default=0)
    next_action_at = models.DateTimeField(
        null=True, blank=True, help_text="When the next email is due; empty means no more outreach."
    )
    stopped_reason = models.CharField(max_length=200, blank=True)
    first_contacted_at = models.DateTimeField(null=True, blank=True)
    last_contacted_at = models.DateTimeField(null=True, blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    enriched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # Last among the fields: the name hides django.utils.timezone in the rest of the class body.
    timezone = models.CharField(
        max_length=64, blank=True, validators=[time_zone], help_text="IANA name, e.g. Europe/Paris."
    )

    class Meta:
        ordering = ["-score", "id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "email"], name="lead_unique_email_per_campaign"),
            models.CheckConstraint(condition=Q(email=Lower("email")), name="lead_email_lower_case"),
            models.CheckConstraint(condition=Q(score__gte=0) & Q(score__lte=1), name="lead_score_0_to_1"),
            models.UniqueConstraint(
                fields=["campaign", "external_id"], condition=~Q(external_id=""), name="lead_unique_external_id"
            ),
        ]
        indexes = [
            # The metrics aggregate and the console's status filter.
            models.Index(fields=["campaign", "status"], name="lead_campaign_status"),
            # Due leads: only rows that still expect outreach are indexed.
            models.Index(
                fields=["campaign", "next_action_at"],
                name="lead_due",
                condition=Q(next_action_at__isnull=False),
            ),
            # Enrichment picks NEW leads oldest first.
            models.Index(
                fields=["campaign", "created_at"], name="lead_new", condition=Q(status="NEW")
            ),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    @property
    def do_not_contact(self) -> bool:
        return TAG_DO_NOT_CONTACT in (self.tags or [])

    @property
    def hot(self) -> bool:
        return TAG_HOT in (self.tags or [])


class LeadEvent(models.Model):
    """One entry of a lead's history: a status change, a stop, a resume, a send's outcome or
    its resolution by staff. Written only by the services that make the change, in the same
    transaction."""

    class Kind(models.TextChoices):
        ENRICHED = "enriched", "Enriched"
        SENT = "sent", "Email sent"
        SEND_FAILED = "send_failed", "Email refused"
        SEND_UNKNOWN = "send_unknown", "Email outcome unknown"
        STOPPED = "stopped", "Stopped"
        STATUS = "status", "Status set by staff"
        REPLIED = "replied", "Reply recorded"
        TAGGED = "tagged", "Tags changed"
        RESUMED = "resumed", "Resumed"
        RESOLVED = "resolved", "Send resolved by staff"
        POSTPONED = "postponed", "Postponed"
        BOUNCED = "bounced", "Bounce received"

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    # Who: "staff <username>" for a person, "cycle of campaign N" for the engine, … .
    actor = models.CharField(max_length=150, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["lead", "created_at"], name="lead_event_lead_created")]

    def __str__(self) -> str:
        return f"{self.lead_id} {self.kind} {self.from_status}→{self.to_status}"


class ImportJob(models.Model):
    """A CSV upload imported in the background (leads.tasks.import_job_run): the file kept under
    CAM_IMPORT_DIR, its progress while a worker reads it, and its report once done.

    Written only by leads.import_jobs: a worker takes the job with a conditional update, and
    every later write names the run (`attempts`) that took it, so a run taken over after the task
    timeout changes nothing."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="import_jobs")
    path = models.CharField(max_length=500, help_text="The saved file, relative to CAM_IMPORT_DIR; removed once done.")
    file_name = models.CharField(max_length=255, help_text="The name of the uploaded file.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # How many runs took the job: more than one after a worker died and the job was taken over.
    attempts = models.PositiveSmallIntegerField(default=0)
    rows_read = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    report = models.JSONField(null=True, blank=True, help_text="The import report, once done.")
    error = models.TextField(blank=True, help_text="Why the import failed.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["campaign", "-created_at"], name="import_job_campaign_recent")]

    def __str__(self) -> str:
        return f"{self.file_name} → campaign {self.campaign_id} ({self.status})"


class EnrichmentRequest(models.Model):
    """A batch of leads submitted to an asynchronous enricher (Dropcontact): its request id, and
    the leads in the order they were sent (the results come back in that order). Its leads
    point to it while it is pending: they are not emailed and not submitted again."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="enrichment_requests")
    provider = models.CharField(max_length=20)
    request_id = models.CharField(max_length=500)
    lead_ids = models.JSONField(default=list, help_text="The leads submitted, in the order sent.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    submitted_at = models.DateTimeField(default=timezone.now)
    polled_at = models.DateTimeField(null=True, blank=True)
    polls = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True, help_text="The provider's last word: not ready, why it failed.")

    class Meta:
        ordering = ["submitted_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "request_id"], name="enrichment_request_unique_id"),
        ]
        indexes = [
            models.Index(fields=["campaign", "submitted_at"], name="enrichment_request_pending",
                         condition=Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.request_id} ({self.status})"


class ApiUsage(models.Model):
    """One call to a lead-data provider that costs credits (an Apollo reveal, a Dropcontact
    submission): reserved against the campaign's daily budget before the call, under the
    campaign's row lock, then settled with what the provider answered. Written only by
    leads.credits."""

    class Provider(models.TextChoices):
        APOLLO = "apollo", "Apollo.io"
        DROPCONTACT = "dropcontact", "Dropcontact"

    class Outcome(models.TextChoices):
        RESERVED = "reserved", "Under way"
        DONE = "done", "Done"
        # Refused with an answer (401, 402, 429, 4xx, 5xx): nothing was charged.
        REFUSED = "refused", "Refused"
        # No usable answer (timeout, cut connection): the credits count as spent.
        UNKNOWN = "unknown", "Outcome unknown"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="api_usage")
    source = models.ForeignKey(LeadSource, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    provider = models.CharField(max_length=20, choices=Provider.choices)
    day = models.DateField(help_text="The calendar day (TIME_ZONE) the credits count against.")
    endpoint = models.CharField(max_length=100)
    asked = models.PositiveIntegerField(default=0, help_text="People or contacts in the call.")
    credits = models.PositiveIntegerField(default=0, help_text="Credits counted: reserved, then as charged.")
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.RESERVED)
    response = models.JSONField(null=True, blank=True, help_text="What the provider returned.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = verbose_name_plural = "API usage"
        indexes = [models.Index(fields=["campaign", "provider", "day"], name="api_usage_campaign_day")]

    def __str__(self) -> str:
        return f"{self.provider} {self.endpoint} {self.credits} credits ({self.outcome})"
