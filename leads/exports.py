"""A campaign's leads as CSV (the console's *Export* and `?format=csv` on the API's list)."""

from django.utils import timezone

from cam_project.export import queryset_csv

# (header, field) in the file's order: what an operator takes to a spreadsheet or a CRM.
COLUMNS = (
    ("id", "id"), ("email", "email"), ("first_name", "first_name"), ("last_name", "last_name"),
    ("company", "company"), ("job_title", "job_title"), ("company_size", "company_size"), ("industry", "industry"),
    ("city", "city"), ("country", "country"), ("website", "website"), ("linkedin_url", "linkedin_url"),
    ("timezone", "timezone"), ("status", "status"), ("score", "score"), ("tags", "tags"),
    ("emails_sent", "attempt_count"), ("first_contacted_at", "first_contacted_at"),
    ("last_contacted_at", "last_contacted_at"), ("replied_at", "replied_at"), ("next_email_at", "next_action_at"),
    ("stopped_reason", "stopped_reason"), ("origin", "origin"), ("collected_at", "collected_at"),
    ("created_at", "created_at"),
)


def leads_csv(*, campaign, leads):
    """`leads` (a queryset, filtered and ordered as on the page) streamed as CSV."""
    return queryset_csv(queryset=leads, columns=COLUMNS,
                        filename=f"campaign-{campaign.pk}-leads-{timezone.now():%Y%m%d-%H%M}.csv")
