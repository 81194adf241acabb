from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from campaigns.models import Campaign, CycleLease, CycleRun, MessageStep
from campaigns.runs import cycle_start, lease_state
from campaigns.services import Refused, campaign_pause, campaign_resume, campaign_update, live_refusal
from leads.admin import LeadSourceForm, lead_source_form
from leads.models import LeadSource


class MessageStepInline(admin.StackedInline):
    model = MessageStep
    extra = 0
    fields = ("position", "delay_days", "subject_template", "body_template")


class LeadSourceInline(admin.TabularInline):
    model = LeadSource
    form = LeadSourceForm
    extra = 0
    fields = ("name", "kind", "csv_file", "settings", "active", "last_run_at", "last_error")
    show_change_link = True  # an Apollo source's search is a form on its own page
    readonly_fields = ("last_run_at", "last_error")

    def get_formset(self, request, obj=None, **kwargs):
        kwargs["form"] = lead_source_form(request)
        return super().get_formset(request, obj, **kwargs)


class CampaignAdminForm(forms.ModelForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "live" in self.fields:
            # "Changed" means changed on this page, not from what the database says now: a page
            # opened before someone else switched it leaves it as they set it.
            self.fields["live"].show_hidden_initial = True

    def clean(self):
        cleaned = super().clean()
        candidate = Campaign(live=cleaned.get("live", False), postal_address=cleaned.get("postal_address", ""))
        if reason := live_refusal(candidate):
            self.add_error("live", reason)
        return cleaned


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignAdminForm
    list_display = ("name", "active", "live", "target_niche", "target_clients", "max_emails_per_day", "created_at", "pause_reason")
    list_filter = ("active", "live", "service_key")
    search_fields = ("name", "description", "target_niche", "service_key")
    # Pausing and resuming go through the actions (services), which keep the reason straight.
    readonly_fields = ("active", "paused_at", "pause_reason", "resumed_at", "live_since", "lease", "mailbox_list")
    inlines = [MessageStepInline, LeadSourceInline]
    actions = ["pause_campaigns", "resume_campaigns", "run_dry_cycle"]
    fieldsets = (
        (None, {"fields": ("name", "description", "active", "paused_at", "pause_reason", "resumed_at")}),
        ("Target", {"fields": ("target_niche", "service_key", "target_clients", "target_mrr")}),
        ("Outreach", {"fields": ("channels_enabled", "max_emails_per_day", "max_attempts_per_lead",
                                 "qualification_threshold", "qualify_on", "stop_company_on_reply", "sender_name", "sender_email", "timezone",
                                 "mailbox_list")}),
        ("Scheduled sending", {"fields": ("live", "live_since", "postal_address", "lease"),
                               "description": "Live: scheduled cycles send real email. Off: they run dry."}),
        ("Personal data (GDPR)", {"fields": ("lawful_basis", "lawful_basis_note")}),
    )

    @admin.display(description="Mailboxes")
    def mailbox_list(self, campaign):
        names = [str(box) for box in campaign.mailboxes.all()] if campaign.pk else []
        return ", ".join(names) or "none: the environment's EMAIL_* settings (choose mailboxes on the mailbox's page)"

    @admin.display(description="Lease")
    def lease(self, campaign):
        return lease_state(CycleLease.objects.filter(pk=campaign.pk).first(), timezone.now())

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        if not request.user.has_perm("campaigns.change_campaign"):  # adding a live campaign sends mail
            fields = (*fields, "live")
        return fields

    def save_model(self, request, obj, form, change):
        """The live switch goes through campaign_update (its check, its row lock, live_since).
        The rest of the form never writes it: a page opened before someone else switched it
        must not switch it back."""
        if not change:
            obj.live_since = timezone.now() if obj.live else None
            return super().save_model(request, obj, form, change)
        live = obj.live
        obj.live, obj.live_since = Campaign.objects.values_list("live", "live_since").get(pk=obj.pk)
        super().save_model(request, obj, form, change)
        if "live" not in form.changed_data or live == obj.live or "initial-live" not in request.POST:
            return  # no switch asked, or a post without the page's hidden initial: nothing to compare
        try:
            updated = campaign_update(campaign=obj, data={"live": live}, now=timezone.now())
        except Refused as exc:  # changed by someone else since the form was checked
            self.message_user(request, f"Not switched live: {exc}.", messages.ERROR)
        else:
            obj.live, obj.live_since = updated.live, updated.live_since

    @admin.action(permissions=["change"], description="Pause selected campaigns")
    def pause_campaigns(self, request, queryset):
        for campaign in queryset:
            campaign_pause(campaign=campaign, reason=f"paused by {request.user}", now=timezone.now())
        self.message_user(request, f"Paused {queryset.count()} campaign(s).", messages.SUCCESS)

    @admin.action(permissions=["change"], description="Resume selected campaigns")
    def resume_campaigns(self, request, queryset):
        resumed = 0
        for campaign in queryset:
            try:
                campaign_resume(campaign=campaign, now=timezone.now())
                resumed += 1
            except Refused as exc:
                self.message_user(request, f"{campaign} not resumed: {exc}.", messages.WARNING)
        self.message_user(request, f"Resumed {resumed} campaign(s).", messages.SUCCESS)

    @admin.action(permissions=["change"], description="Run a dry-run cycle (sends nothing)")
    def run_dry_cycle(self, request, queryset):
        for campaign in queryset:
            result = cycle_start(campaign=campaign, trigger=CycleRun.Trigger.ADMIN, dry_run=True, user=request.user)
            level = messages.WARNING if result.errors else messages.INFO
            self.message_user(
                request,
                f"{campaign}: discovered {result.leads_discovered}, enriched {result.leads_enriched}, "
                f"would send {result.outreach_sent}, skipped {result.outreach_skipped}"
                + (f"; errors: {'; '.join(result.errors)}" if result.errors else ""),
                level,
            )


@admin.register(CycleRun)
class CycleRunAdmin(admin.ModelAdmin):
    """The run history: written by cycles only."""

    list_display = ("started_at", "campaign", "trigger", "dry_run", "finished_at", "sent", "failed", "unknown",
                    "error_count", "requested_by")
    list_filter = ("trigger", "dry_run")
    search_fields = ("campaign__name", "holder")
    list_select_related = ("campaign", "requested_by")
    date_hierarchy = "started_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(CycleLease)
class CycleLeaseAdmin(admin.ModelAdmin):
    """Who runs each campaign's cycle now. Read only: a stuck lease expires by itself."""

    list_display = ("campaign", "holder", "taken_at", "expires_at")
    list_select_related = ("campaign",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
