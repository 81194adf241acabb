from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from leads.models import TAG_DO_NOT_CONTACT, Lead, LeadSource
from leads.rows import email_normalise
from leads.services import lead_tag_add


@admin.register(LeadSource)
class LeadSourceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "campaign", "kind", "active", "last_run_at", "last_error")
    list_filter = ("kind", "active")
    list_select_related = ("campaign",)
    search_fields = ("name", "campaign__name")


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
    readonly_fields = ("score", "attempt_count", "first_contacted_at", "last_contacted_at", "replied_at",
                       "enriched_at", "created_at", "updated_at", "source_data", "enrichment",
                       "email_verification", "email_valid", "stopped_reason")
    raw_id_fields = ("campaign", "source")
    actions = ["mark_do_not_contact"]
    # Status, tags and scheduling change through the state machine (services), not by hand.
    STATE_FIELDS = ("status", "tags", "next_action_at")

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, *self.STATE_FIELDS, *(("email", "campaign") if obj else ()))

    def save_model(self, request, obj, form, change):
        if not change:
            # A lead added by hand is like an imported one: NEW and due at once.
            obj.email = email_normalise(obj.email)
            obj.next_action_at = obj.created_at = timezone.now()
        super().save_model(request, obj, form, change)

    @admin.action(permissions=["change"], description="Mark selected leads do-not-contact")
    def mark_do_not_contact(self, request, queryset):
        for lead in queryset:
            lead_tag_add(lead=lead, tag=TAG_DO_NOT_CONTACT)
        self.message_user(request, f"{queryset.count()} lead(s) will get no more email.", messages.SUCCESS)
