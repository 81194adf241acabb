from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from campaigns.services import Refused
from leads.models import TAG_DO_NOT_CONTACT, Lead, LeadEvent, LeadSource
from leads.rows import email_normalise
from leads.services import ENRICHABLE_FIELDS, Actor, InvalidTransition, lead_tag_add, lead_update
from outreach.attention import lead_resume


@admin.register(LeadSource)
class LeadSourceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "campaign", "kind", "active", "last_run_at", "last_error")
    list_filter = ("kind", "active")
    list_select_related = ("campaign",)
    search_fields = ("name", "campaign__name")


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
    readonly_fields = ("score", "attempt_count", "first_contacted_at", "last_contacted_at", "replied_at",
                       "enriched_at", "created_at", "updated_at", "source_data", "enrichment",
                       "email_verification", "email_valid", "stopped_reason")
    raw_id_fields = ("campaign", "source")
    actions = ["mark_do_not_contact", "mark_replied", "mark_qualified", "mark_lost", "resume_leads"]
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
            obj.next_action_at = obj.created_at = timezone.now()
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

    @admin.action(permissions=["change"], description="Mark selected leads do-not-contact")
    def mark_do_not_contact(self, request, queryset):
        self._each(request, queryset, lambda lead, now, actor: lead_tag_add(
            lead=lead, tag=TAG_DO_NOT_CONTACT, now=now, actor=actor), "will get no more email")

    @admin.action(permissions=["change"], description="Record a reply (no more follow-ups)")
    def mark_replied(self, request, queryset):
        self._each(request, queryset, lambda lead, now, actor: lead_update(
            lead=lead, data={"status": Lead.Status.REPLIED}, now=now, actor=actor), "marked replied")

    @admin.action(permissions=["change"], description="Mark interested (QUALIFIED)")
    def mark_qualified(self, request, queryset):
        self._each(request, queryset, lambda lead, now, actor: lead_update(
            lead=lead, data={"status": Lead.Status.QUALIFIED}, now=now, actor=actor), "marked qualified")

    @admin.action(permissions=["change"], description="Mark not interested (LOST)")
    def mark_lost(self, request, queryset):
        self._each(request, queryset, lambda lead, now, actor: lead_update(
            lead=lead, data={"status": Lead.Status.LOST}, now=now, actor=actor), "marked lost")

    @admin.action(permissions=["change"], description="Resume selected stopped leads")
    def resume_leads(self, request, queryset):
        self._each(request, queryset, lambda lead, now, actor: lead_resume(lead=lead, actor=actor, now=now),
                   "resumed")
