from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.conf import settings
from django.utils import timezone

from cam_project.validators import no_control_characters

from campaigns.models import Campaign

TAG_HOT = "hot"
TAG_DO_NOT_CONTACT = "do_not_contact"


class LeadSource(models.Model):
    """Where a campaign's leads come from; `kind` picks the function in leads.sources.SOURCES."""

    class Kind(models.TextChoices):
        CSV = "csv", "CSV file"
        APOLLO = "apollo", "Apollo.io people search"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="lead_sources")
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    settings = models.JSONField(
        default=dict, blank=True, help_text='For CSV: {"path": "data/sample_leads.csv"}.'
    )
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

    class Meta:
        ordering = ["-score", "id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "email"], name="lead_unique_email_per_campaign"),
            models.CheckConstraint(condition=Q(email=Lower("email")), name="lead_email_lower_case"),
            models.CheckConstraint(condition=Q(score__gte=0) & Q(score__lte=1), name="lead_score_0_to_1"),
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
