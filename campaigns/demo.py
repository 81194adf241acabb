"""The demo campaign of `make demo`: loaded once, whatever the number of runs."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from campaigns.models import Campaign, MessageStep
from leads.models import LeadSource
from outreach.messages import DEFAULT_STEPS

DEMO_NAME = "Demo: web design for B2B SaaS"
DEMO_CSV = "data/sample_leads.csv"
DEMO_USER, DEMO_PASSWORD = "demo", "cam-demo-2026"


@transaction.atomic
def demo_load() -> tuple[Campaign, bool]:
    """The demo campaign with its three steps and CSV lead source; (campaign, created)."""
    campaign, created = Campaign.objects.get_or_create(
        name=DEMO_NAME,
        defaults={
            "description": "Find 25 qualified B2B SaaS leads for a new marketing site.",
            "target_niche": "B2B SaaS",
            "service_key": "web_design",
            "target_clients": 25,
            "target_mrr": 5000,
            "max_emails_per_day": 20,
            "sender_name": "Alex from Demo Studio",
            "sender_email": "alex@demo-studio.example",
        },
    )
    if created:
        MessageStep.objects.bulk_create(
            MessageStep(campaign=campaign, position=i, delay_days=delay, subject_template=subject, body_template=body)
            for i, (delay, subject, body) in enumerate(DEFAULT_STEPS, start=1)
        )
        LeadSource.objects.create(
            campaign=campaign, name="Sample CSV", kind=LeadSource.Kind.CSV, settings={"path": DEMO_CSV}
        )
    return campaign, created


def demo_login() -> tuple[str, str] | None:
    """A staff login for the console, only on the embedded SQLite database: a known password
    must never be created on a real (DATABASE_URL) database."""
    if not settings.CAM_EMBEDDED_DB:
        return None
    User = get_user_model()
    if not User.objects.filter(username=DEMO_USER).exists():
        User.objects.create_superuser(DEMO_USER, "demo@demo-studio.example", DEMO_PASSWORD)
    return DEMO_USER, DEMO_PASSWORD
