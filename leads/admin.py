from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils import timezone

from cam_project.uploads import upload_refusal
from campaigns.services import Refused
from leads.apollo_source import apollo_progress, apollo_settings_clean, apollo_source_save
from leads.forms import ApolloFiltersForm
from leads.models import ApiUsage, EnrichmentRequest, ImportJob, Lead, LeadEvent, LeadSource
from leads.rows import LeadFileError, email_normalise
from leads.services import ENRICHABLE_FIELDS, Actor, InvalidTransition, lead_record_outcome, lead_update
from leads.sources import lead_file_check, source_csv_save, source_file_path
from outreach.attention import lead_resume


class LeadSourceForm(forms.ModelForm):
    """A lead source, and for a CSV source its file: uploaded here and kept under
    CAM_IMPORT_DIR (source_csv_save). A path typed into the settings must lie there too. An
    Apollo source's settings are checked as the cycle checks them (apollo_settings_clean)."""

    csv_file = forms.FileField(
        required=False, label="CSV file",
        help_text="For a CSV source: the file to read at every cycle (replaces the current one).",
    )
    # The request's upload refusal (too large), set by the admin for each request.
    upload_refusal = None

    class Meta:
        model = LeadSource
        fields = "__all__"
        help_texts = {"settings": 'For CSV: set by the uploaded file, {"path": "<campaign id>/<file>.csv"}, '
                                  "a path under CAM_IMPORT_DIR."}

    def clean(self):
        cleaned = super().clean()
        upload, kind = cleaned.get("csv_file"), cleaned.get("kind") or self.instance.kind
        if kind == LeadSource.Kind.APOLLO:
            settings = self.apollo_settings()
            if settings is not None:  # kept whether or not the settings are a field of this form
                cleaned["settings"] = self.instance.settings = settings
        refusal = self.upload_refusal
        if refusal is not None and refusal.field == self.add_prefix("csv_file"):
            self.add_error("csv_file", str(refusal))
        elif upload and kind != LeadSource.Kind.CSV:
            self.add_error("csv_file", "Only a CSV source reads a file.")
        elif upload:
            try:
                lead_file_check(upload, upload.name)
            except LeadFileError as exc:
                self.add_error("csv_file", f"{upload.name} cannot be used: {exc}")
        elif kind == LeadSource.Kind.CSV and "csv_file" not in self.errors:
            settings = cleaned.get("settings")
            path = settings.get("path") if isinstance(settings, dict) else None
            if not path:
                self.add_error("csv_file", "Upload the CSV file this source reads.")
            else:
                try:
                    source_file_path(path)
                except LeadFileError as exc:
                    self.add_error("settings", str(exc))
        return cleaned

    def apollo_settings(self) -> dict | None:
        """The Apollo settings typed as JSON, cleaned; None once the fault is on the field."""
        if "settings" in self.errors:
            return None
        try:
            return apollo_settings_clean(self.cleaned_data.get("settings"))
        except ValidationError as exc:
            if not hasattr(exc, "error_dict"):
                self.add_error("settings", exc)
            else:
                self.add_error("settings", [" ".join(errors) if name == "settings" else f"{name}: {' '.join(errors)}"
                                            for name, errors in exc.message_dict.items()])
            return None

    def save(self, commit=True):
        upload = self.cleaned_data.get("csv_file")
        if not (upload and commit):
            return super().save(commit)
        source = self.instance
        return source_csv_save(campaign=source.campaign, file=upload, name=source.name, now=timezone.now(),
                               source=source)


def lead_source_form(request, form: type[LeadSourceForm] = LeadSourceForm) -> type[LeadSourceForm]:
    """The form knowing whether this request's upload was refused as too large."""
    return type(form.__name__, (form,), {"upload_refusal": upload_refusal(request)})


class LeadSourceAdminForm(ApolloFiltersForm, LeadSourceForm):
    """A lead source on its own admin page: an Apollo source's search in fields (the console's),
    not JSON."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.kind == LeadSource.Kind.APOLLO:
            self.initial.update(self.filters_initial(self.instance.settings))

    def apollo_settings(self) -> dict | None:
        return self.filters_settings()


APOLLO_FIELDSET = ("Apollo search", {
    "fields": ("person_titles", "person_seniorities", "person_locations", "organization_locations",
               "organization_num_employees_ranges", "q_keywords", "q_organization_domains_list", "per_cycle"),
    "description": "The people search of an Apollo source, checked as the cycle checks it. At least one filter.",
})


@admin.register(LeadSource)
class LeadSourceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "campaign", "kind", "active", "last_run_at", "last_error")
    list_filter = ("kind", "active")
    list_select_related = ("campaign",)
    search_fields = ("name", "campaign__name")
    readonly_fields = ("last_run_at", "last_error", "search")
    raw_id_fields = ("campaign",)

    def get_fieldsets(self, request, obj=None):
        """A new source shows both kinds' settings; an existing one its own kind's."""
        main = (None, {"fields": ("campaign", "name", "kind", "active", "last_run_at", "last_error")})
        csv = ("CSV file", {"fields": ("csv_file", "settings"), "description": "For a CSV source."})
        if obj is None:
            return (main, csv, (APOLLO_FIELDSET[0], {**APOLLO_FIELDSET[1], "description": "For an Apollo source. "
                                                     + APOLLO_FIELDSET[1]["description"]}))
        if obj.kind == LeadSource.Kind.APOLLO:
            return (main, (APOLLO_FIELDSET[0], {**APOLLO_FIELDSET[1],
                                                "fields": ("search", *APOLLO_FIELDSET[1]["fields"])}))
        return (main, csv)

    def get_readonly_fields(self, request, obj=None):
        # A source's kind is fixed once it exists: its settings and leads are of that kind.
        return (*self.readonly_fields, *(("kind",) if obj else ()))

    @admin.display(description="Where the search stands")
    def search(self, source):
        return apollo_progress(source, timezone.now()) if source.kind == LeadSource.Kind.APOLLO else "—"

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = lead_source_form(request, LeadSourceAdminForm)
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request, obj, form, change):
        upload = form.cleaned_data.get("csv_file")
        if upload:
            source_csv_save(campaign=obj.campaign, file=upload, name=obj.name, now=timezone.now(), source=obj)
        elif obj.kind == LeadSource.Kind.APOLLO:  # leaves the search's place (state) to the cycle
            apollo_source_save(campaign=obj.campaign, name=obj.name, active=obj.active, settings=obj.settings,
                               source=obj)
        else:
            super().save_model(request, obj, form, change)


class LeadEventInline(admin.TabularInline):
    """The lead's history: written by the services only."""

    model = LeadEvent
    extra = 0
    fields = ("created_at", "kind", "from_status", "to_status", "reason", "actor")
    readonly_fields = fields
    can_delete = False
    ordering = ("created_at", "id")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class LeadAdminForm(forms.ModelForm):
    """The address trimmed and lower-cased before the model's checks (its lower-case constraint,
    one lead per address and campaign) see it, as an import stores it."""

    def clean_email(self):
        return email_normalise(self.cleaned_data["email"])


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    form = LeadAdminForm  # the email is read-only once the lead exists: this acts on the add page
    list_display = ("email", "full_name", "company", "campaign", "status", "score", "attempt_count",
                    "next_action_at", "stopped_reason")
    list_filter = ("status", "campaign", "email_valid")
    list_select_related = ("campaign",)
    search_fields = ("email", "first_name", "last_name", "company", "job_title")
    readonly_fields = ("origin", "collected_at", "score", "attempt_count", "first_contacted_at", "last_contacted_at",
                       "replied_at", "enriched_at", "created_at", "updated_at", "source_data", "enrichment",
                       "email_verification", "email_valid", "stopped_reason")
    raw_id_fields = ("campaign", "source")
    actions = ["mark_do_not_contact", "mark_replied", "mark_qualified", "mark_lost", "resume_leads", "erase_people"]
    inlines = [LeadEventInline]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # a lead being added has no history yet
    # Status, tags and scheduling change through the state machine (services), not by hand.
    STATE_FIELDS = ("status", "tags", "next_action_at")

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, *self.STATE_FIELDS, *(("email", "campaign") if obj else ()))

    def save_model(self, request, obj, form, change):
        if not change:
            # A lead added by hand is like an imported one: NEW and due at once.
            obj.email = email_normalise(obj.email)
            obj.next_action_at = obj.created_at = obj.collected_at = timezone.now()
            obj.origin = f"added in the admin by {request.user}"
            super().save_model(request, obj, form, change)
            return
        # Only the details staff changed, under the lead's row lock: saving the whole form
        # would write back a status and due time read before a cycle moved the lead on.
        details = {name: form.cleaned_data[name] for name in form.changed_data if name in ENRICHABLE_FIELDS}
        if details:
            lead_update(lead=obj, data=details, now=timezone.now(), actor=Actor.staff(request.user))

    def _each(self, request, queryset, change, done: str) -> None:
        """Apply `change(lead, now, actor)` to each selected lead; refusals are reported."""
        now, actor, changed = timezone.now(), Actor.staff(request.user), 0
        for lead in queryset:
            try:
                change(lead, now, actor)
                changed += 1
            except (Refused, InvalidTransition) as exc:
                self.message_user(request, f"{lead.email}: {exc}.", messages.WARNING)
        self.message_user(request, f"{changed} lead(s) {done}.", messages.SUCCESS if changed else messages.INFO)

    def _outcome(self, request, queryset, outcome: str, done: str) -> None:
        self._each(request, queryset, lambda lead, now, actor: lead_record_outcome(
            lead=lead, outcome=outcome, now=now, actor=actor), done)

    @admin.action(permissions=["delete"], description="Erase these people everywhere (GDPR): keep only a suppression")
    def erase_people(self, request, queryset):
        from outreach.erasure import erasure_run  # outreach's service: it also scrubs attempts and suppresses

        if not request.user.has_perm("outreach.add_suppression"):
            self.message_user(request, "Erasing needs the permission outreach.add_suppression too.", messages.ERROR)
            return
        emails = sorted(set(queryset.values_list("email", flat=True)))
        now, actor = timezone.now(), Actor.staff(request.user)
        reports = [erasure_run(email=email, now=now, actor=actor) for email in emails]
        leads = sum(r.leads_deleted for r in reports)
        attempts = sum(r.attempts_scrubbed for r in reports)
        self.message_user(request, f"{len(reports)} people erased: {leads} lead(s) deleted in every campaign, "
                                   f"{attempts} attempt(s) kept without personal data, each address suppressed.",
                          messages.SUCCESS)
        files = sorted({f for r in reports for f in r.source_files})
        if files:
            self.message_user(request, "Still in the files of these CSV sources (never imported again): "
                              + "; ".join(files), messages.WARNING)

    @admin.action(permissions=["change"], description="Mark selected leads do-not-contact")
    def mark_do_not_contact(self, request, queryset):
        self._outcome(request, queryset, "do_not_contact", "will get no more email")

    @admin.action(permissions=["change"], description="Record a reply (no more follow-ups)")
    def mark_replied(self, request, queryset):
        self._outcome(request, queryset, "replied", "marked replied")

    @admin.action(permissions=["change"], description="Mark interested (QUALIFIED)")
    def mark_qualified(self, request, queryset):
        self._outcome(request, queryset, "qualified", "marked qualified")

    @admin.action(permissions=["change"], description="Mark not interested (LOST)")
    def mark_lost(self, request, queryset):
        self._outcome(request, queryset, "lost", "marked lost")

    @admin.action(permissions=["change"], description="Resume selected stopped leads")
    def resume_leads(self, request, queryset):
        self._each(request, queryset, lambda lead, now, actor: lead_resume(lead=lead, actor=actor, now=now),
                   "resumed")


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    """Imports run in the background: written by their worker only (leads.import_jobs)."""

    list_display = ("id", "file_name", "campaign", "status", "rows_read", "imported", "duplicates", "rejected",
                    "requested_by", "created_at", "finished_at")
    list_filter = ("status",)
    list_select_related = ("campaign", "requested_by")
    search_fields = ("file_name", "campaign__name")
    readonly_fields = [field.name for field in ImportJob._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ApiUsage)
class ApiUsageAdmin(_ReadOnly):
    """Every call to Apollo or Dropcontact that cost credits: written by leads.credits only."""

    list_display = ("created_at", "campaign", "provider", "endpoint", "asked", "credits", "outcome", "day")
    list_filter = ("provider", "outcome")
    search_fields = ("campaign__name", "error")
    list_select_related = ("campaign",)
    date_hierarchy = "day"


@admin.register(EnrichmentRequest)
class EnrichmentRequestAdmin(_ReadOnly):
    """Batches of leads submitted to Dropcontact, pending until their results are in."""

    list_display = ("submitted_at", "campaign", "provider", "request_id", "status", "polls", "finished_at", "note")
    list_filter = ("provider", "status")
    search_fields = ("campaign__name", "request_id")
    list_select_related = ("campaign",)
