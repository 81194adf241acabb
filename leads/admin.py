from django.contrib import admin

from leads.models import Lead, LeadSource


@admin.register(LeadSource)
class LeadSourceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "campaign", "kind", "active", "last_run_at", "last_error")
    list_filter = ("kind", "active")
    list_select_related = ("campaign",)
    search_fields = ("name", "campaign__name")


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    list_display = ("email", "full_name", "company", "campaign", "status", "score", "attempt_count",
                    "next_action_at", "stopped_reason")
    list_filter = ("status", "campaign", "email_valid")
    list_select_related = ("campaign",)
    search_fields = ("email", "first_name", "last_name", "company", "job_title")
    readonly_fields = ("score", "attempt_count", "first_contacted_at", "last_contacted_at", "replied_at",
                       "enriched_at", "created_at", "updated_at", "source_data", "enrichment",
                       "email_verification", "email_valid", "stopped_reason")
    raw_id_fields = ("campaign", "source")
