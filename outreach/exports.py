"""A campaign's sends as CSV (the console's *Export* and `?format=csv` on the API's list)."""

from django.utils import timezone

from cam_project.export import CHUNK, csv_response

COLUMNS = (
    ("id", "id"), ("created_at", "created_at"), ("lead_id", "lead_id"), ("email", "lead__email"), ("step", "step"),
    ("status", "status"), ("subject", "subject"), ("mailbox", "mailbox__name"), ("message_id", "message_id"),
    ("provider_message_id", "provider_message_id"), ("finished_at", "finished_at"), ("bounced_at", "bounced_at"),
    ("error", "error"), ("resolution", "resolution"),
)


def attempts_csv(*, campaign, attempts):
    rows = attempts.values_list(*(field for _, field in COLUMNS)).iterator(chunk_size=CHUNK)
    name = f"campaign-{campaign.pk}-sends-{timezone.now():%Y%m%d-%H%M}.csv"
    return csv_response(filename=name, header=[header for header, _ in COLUMNS], rows=rows)
