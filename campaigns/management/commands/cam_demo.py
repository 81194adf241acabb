"""`make demo`: load the sample campaign (once) and run one dry-run cycle of it."""

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from campaigns.models import Campaign, MessageStep
from leads.models import LeadSource
from outreach.messages import DEFAULT_STEPS

DEMO_NAME = "Demo: web design for B2B SaaS"
DEMO_USER, DEMO_PASSWORD = "demo", "cam-demo-2026"


class Command(BaseCommand):
    help = "Load the demo campaign with its CSV lead source (idempotent) and run a dry-run cycle."

    def add_arguments(self, parser):
        parser.add_argument("--no-cycle", action="store_true", help="Only load the demo data.")

    def handle(self, *args, **options):
        campaign, created = self._load()
        verb = "Loaded" if created else "Found"
        self.stdout.write(f"{verb} demo campaign #{campaign.pk} '{campaign.name}' (CSV: data/sample_leads.csv)")
        if not options["no_cycle"]:
            call_command("run_cam_cycle", campaign_id=campaign.pk, stdout=self.stdout, stderr=self.stderr)
        self.stdout.write(
            f"\nAdmin: http://127.0.0.1:8000/admin/ (run `make serve`), user '{DEMO_USER}', "
            f"password '{DEMO_PASSWORD}' — a demo login, for this local database only."
        )

    @transaction.atomic
    def _load(self) -> tuple[Campaign, bool]:
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
                campaign=campaign, name="Sample CSV", kind=LeadSource.Kind.CSV,
                settings={"path": "data/sample_leads.csv"},
            )
        User = get_user_model()
        if not User.objects.filter(username=DEMO_USER).exists():
            User.objects.create_superuser(DEMO_USER, "demo@demo-studio.example", DEMO_PASSWORD)
        return campaign, created
