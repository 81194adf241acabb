from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from campaigns.services import Refused
from leads.rows import email_normalise
from leads.services import Actor
from outreach.attention import attempt_resolve

from outreach.limits import mailbox_today, mailbox_warmup_day
from outreach.forms import MailboxForm
from outreach.models import Mailbox, OutreachAttempt, Suppression
from outreach.suppression import suppression_add


@admin.register(OutreachAttempt)
class OutreachAttemptAdmin(admin.ModelAdmin):
    """Read-only: attempts are the record of what was sent. CLAIMED rows are interrupted sends."""

    list_display = ("created_at", "campaign", "lead", "step", "status", "subject", "error")
    list_filter = ("status", "campaign", "channel")
    list_select_related = ("campaign", "lead")
    search_fields = ("lead__email", "subject", "message_id")
    date_hierarchy = "created_at"
    actions = ["resolve_sent", "resolve_not_sent"]

    def _resolve(self, request, queryset, outcome: str) -> None:
        now, actor, resolved = timezone.now(), Actor.staff(request.user), 0
        for attempt in queryset:
            try:
                attempt_resolve(attempt=attempt, outcome=outcome, actor=actor, now=now)
                resolved += 1
            except Refused as exc:
                self.message_user(request, f"Attempt {attempt.pk} ({attempt.lead}): {exc}.", messages.WARNING)
        self.message_user(request, f"{resolved} send(s) resolved.", messages.SUCCESS if resolved else messages.INFO)

    @admin.action(permissions=["resolve"], description="Resolve claimed/unknown sends: it was sent")
    def resolve_sent(self, request, queryset):
        self._resolve(request, queryset, OutreachAttempt.Resolution.SENT)

    @admin.action(permissions=["resolve"], description="Resolve claimed/unknown sends: it was not sent")
    def resolve_not_sent(self, request, queryset):
        self._resolve(request, queryset, OutreachAttempt.Resolution.NOT_SENT)

    def has_resolve_permission(self, request):
        # The attempts stay read-only in the admin; resolving is the one change staff make.
        return request.user.has_perm("outreach.change_outreachattempt")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # An attempt is what stops a step being sent twice: it is never deleted by hand.
        return False


class SuppressionAdminForm(forms.ModelForm):
    """The address trimmed and lower-cased before the model's checks (its lower-case constraint,
    one entry per address) see it, as suppression_add stores it."""

    def clean_email(self):
        return email_normalise(self.cleaned_data["email"])


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    form = SuppressionAdminForm
    list_display = ("email", "reason", "note", "created_at")
    list_filter = ("reason",)
    search_fields = ("email", "note")

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
        else:
            # Through the service, so the address's leads stop at once.
            saved, _ = suppression_add(email=obj.email, reason=obj.reason, note=obj.note, now=timezone.now())
            obj.pk, obj.email = saved.pk, saved.email


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):
    form = MailboxForm
    list_display = ("name", "from_email", "kind", "active", "sends_today", "warmup", "last_error")
    list_filter = ("active", "kind")
    search_fields = ("name", "from_email", "smtp_host")
    filter_horizontal = ("campaigns",)
    readonly_fields = ("last_error", "disabled_at", "created_at")
    fieldsets = (
        (None, {"fields": ("name", "kind", "from_name", "from_email", "campaigns", "active", "last_error",
                           "disabled_at")}),
        ("SMTP", {"fields": ("smtp_host", "smtp_port", "smtp_security", "smtp_username", "smtp_password")}),
        ("ESP (django-anymail)", {"fields": ("esp", "esp_api_key", "esp_settings")}),
        ("IMAP (replies)", {"fields": ("imap_host", "imap_port", "imap_security", "imap_username", "imap_password",
                                       "imap_inbox", "imap_sent")}),
        ("Limits", {"fields": ("daily_cap", "warmup_start", "warmup_step", "warmup_started_on", "min_gap_seconds",
                               "gap_jitter_seconds", "window_days", "window_start", "window_end", "timezone")}),
    )

    @admin.display(description="Today")
    def sends_today(self, mailbox):
        today = mailbox_today(mailbox=mailbox, now=timezone.now())
        return f"{today.sent} / {today.cap}"

    @admin.display(description="Warm-up day")
    def warmup(self, mailbox):
        return mailbox_warmup_day(mailbox=mailbox, now=timezone.now()) or "—"

    def save_model(self, request, obj, form, change):
        form.save_mailbox()
