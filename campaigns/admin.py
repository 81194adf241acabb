from django.contrib import admin, messages
from django.utils import timezone

from campaigns.runs import cycle_start
from campaigns.models import Campaign, CycleRun, MessageStep
from campaigns.services import Refused, campaign_pause, campaign_resume
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
    readonly_fields = ("last_run_at", "last_error")

    def get_formset(self, request, obj=None, **kwargs):
        kwargs["form"] = lead_source_form(request)
        return super().get_formset(request, obj, **kwargs)


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("name", "active", "target_niche", "target_clients", "max_emails_per_day", "created_at", "pause_reason")
    list_filter = ("active", "service_key")
    search_fields = ("name", "description", "target_niche", "service_key")
    # Pausing and resuming go through the actions (services), which keep the reason straight.
    readonly_fields = ("active", "paused_at", "pause_reason", "resumed_at")
    inlines = [MessageStepInline, LeadSourceInline]
    actions = ["pause_campaigns", "resume_campaigns", "run_dry_cycle"]
    fieldsets = (
        (None, {"fields": ("name", "description", "active", "paused_at", "pause_reason", "resumed_at")}),
        ("Target", {"fields": ("target_niche", "service_key", "target_clients", "target_mrr")}),
        ("Outreach", {"fields": ("channels_enabled", "max_emails_per_day", "max_attempts_per_lead",
                                 "qualification_threshold", "sender_name", "sender_email")}),
    )

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
