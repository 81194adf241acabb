"""A campaign's sends as CSV (the console's *Export* and `?format=csv` on the API's list)."""

from django.utils import timezone

from cam_project.export import queryset_csv

COLUMNS = (
    ("id", "id"), ("created_at", "created_at"), ("lead_id", "lead_id"), ("email", "lead__email"), ("step", "step"),
    ("status", "status"), ("subject", "subject"), ("mailbox", "mailbox__name"), ("message_id", "message_id"),
    ("provider_message_id", "provider_message_id"), ("finished_at", "finished_at"), ("bounced_at", "bounced_at"),
    ("error", "error"), ("resolution", "resolution"),
)


def attempts_csv(*, campaign, attempts):
    return queryset_csv(queryset=attempts, columns=COLUMNS,
                        filename=f"campaign-{campaign.pk}-sends-{timezone.now():%Y%m%d-%H%M}.csv")
