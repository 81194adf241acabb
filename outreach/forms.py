"""The mailbox form of the console and the admin: the API's rules, secrets write-only."""

from django import forms

from outreach.mailboxes import EDITABLE_FIELDS, SECRET_FIELDS, mailbox_save, mailbox_settings_errors
from outreach.models import WEEKDAYS, Mailbox


def _secret(label: str) -> forms.CharField:
    return forms.CharField(required=False, max_length=500, label=label, strip=False,
                           widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                           help_text="Never shown; left blank: the stored one is kept.")


class MailboxForm(forms.ModelForm):
    smtp_password = _secret("SMTP password")
    imap_password = _secret("IMAP password")
    esp_api_key = _secret("ESP API key")
    window_days = forms.TypedMultipleChoiceField(
        choices=list(enumerate(WEEKDAYS)), coerce=int, widget=forms.CheckboxSelectMultiple, label="Sending days",
    )
    window_start = forms.TimeField(input_formats=["%H:%M"], widget=forms.TimeInput(format="%H:%M"),
                                   help_text="HH:MM, in the lead's time zone.")
    window_end = forms.TimeField(input_formats=["%H:%M"], widget=forms.TimeInput(format="%H:%M"),
                                 help_text="Before the start: the window crosses midnight. Equal: all day.")

    class Meta:
        model = Mailbox
        fields = ["name", "kind", "from_name", "from_email", "smtp_host", "smtp_port", "smtp_security",
                  "smtp_username", "smtp_password", "esp", "esp_api_key", "esp_settings", "imap_host", "imap_port",
                  "imap_security", "imap_username", "imap_password", "imap_inbox", "imap_sent", "daily_cap",
                  "warmup_start", "warmup_step", "warmup_started_on", "min_gap_seconds", "gap_jitter_seconds",
                  "window_days", "window_start", "window_end", "timezone", "campaigns", "active"]

    def clean(self):
        cleaned = super().clean()
        for name in SECRET_FIELDS:
            if not cleaned.get(name) and self.instance.pk:
                cleaned[name] = getattr(self.instance, name)
        for name, error in mailbox_settings_errors(cleaned.get).items():
            if name not in self.errors:
                self.add_error(name, error)
        return cleaned

    def save_mailbox(self) -> Mailbox:
        """Save through the mailboxes service (what it checks when a mailbox is switched on again)."""
        data = {name: self.cleaned_data[name] for name in EDITABLE_FIELDS if name in self.cleaned_data}
        return mailbox_save(mailbox=self.instance, data=data, campaigns=self.cleaned_data.get("campaigns"))
