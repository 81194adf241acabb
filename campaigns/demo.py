"""The demo campaign of `make demo`: loaded once, whatever the number of runs."""

import filecmp
import shutil
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test.utils import override_settings
from django.utils import timezone

from campaigns.models import Campaign, MessageStep
from campaigns.services import campaign_pause, campaign_resume
from leads.fake_providers import FakeProviders
from leads.models import LeadSource
from leads.sources import import_dir
from outreach.messages import DEFAULT_STEPS

DEMO_NAME = "Demo: web design for B2B SaaS"
# Shipped in the repository, and copied into CAM_IMPORT_DIR, where lead sources read files.
DEMO_CSV = "data/sample_leads.csv"
DEMO_USER, DEMO_PASSWORD = "demo", "cam-demo-2026"
APOLLO_DEMO_NAME = "Demo: Apollo.io source (fake local server)"
APOLLO_DEMO_FILTERS = {
    "person_titles": ["CEO", "Head of Growth", "VP Marketing"], "person_seniorities": ["c_suite", "head", "vp"],
    "organization_num_employees_ranges": ["11,20", "21,50", "51,100"], "per_cycle": 20,
}
# Between demo runs the Apollo demo stays paused: with real keys in the environment, scheduled
# cycles would otherwise spend real credits on made-up filters.
APOLLO_DEMO_PAUSED = "demo of an Apollo source against a fake local server: `cam_demo --with-fake-apollo` runs it"


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
    path = _demo_csv_copy(campaign)
    if created:
        MessageStep.objects.bulk_create(
            MessageStep(campaign=campaign, position=i, delay_days=delay, subject_template=subject, body_template=body)
            for i, (delay, subject, body) in enumerate(DEFAULT_STEPS, start=1)
        )
        LeadSource.objects.create(
            campaign=campaign, name="Sample CSV", kind=LeadSource.Kind.CSV, settings={"path": path}
        )
    else:
        # A demo database made before sources were confined to CAM_IMPORT_DIR reads the copy now.
        for source in campaign.lead_sources.filter(kind=LeadSource.Kind.CSV):
            if (source.settings or {}).get("path") == DEMO_CSV:
                source.settings = {**source.settings, "path": path}
                source.save(update_fields=["settings"])
    return campaign, created


@transaction.atomic
def apollo_demo_load(now) -> tuple[Campaign, bool]:
    """The Apollo demo campaign, paused, with its steps and an Apollo source; (campaign, created)."""
    campaign, created = Campaign.objects.get_or_create(
        name=APOLLO_DEMO_NAME,
        defaults={
            "description": "Watch an Apollo source and Dropcontact work against leads.fake_providers.",
            "target_niche": "B2B SaaS", "service_key": "web_design", "target_clients": 25,
            "max_emails_per_day": 20, "sender_name": "Alex from Demo Studio",
            "sender_email": "alex@demo-studio.example", "apollo_credits_per_day": 50,
            "dropcontact_credits_per_day": 100, "active": False, "paused_at": now, "pause_reason": APOLLO_DEMO_PAUSED,
        },
    )
    if created:
        MessageStep.objects.bulk_create(
            MessageStep(campaign=campaign, position=i, delay_days=delay, subject_template=subject, body_template=body)
            for i, (delay, subject, body) in enumerate(DEFAULT_STEPS, start=1)
        )
        LeadSource.objects.create(campaign=campaign, name="Apollo: SaaS leaders", kind=LeadSource.Kind.APOLLO,
                                  settings=APOLLO_DEMO_FILTERS)
    return campaign, created


@contextmanager
def fake_providers_running():
    """leads.fake_providers started, and this process's Apollo and Dropcontact pointed at it
    (for the block only); yields its URL."""
    fake = FakeProviders()
    url = fake.start()
    try:
        # The fake answers at the second ask for results.
        with override_settings(APOLLO_API_KEY="fake-apollo-key", APOLLO_BASE_URL=url,
                               DROPCONTACT_API_KEY="fake-dropcontact-key", DROPCONTACT_BASE_URL=url,
                               CAM_DROPCONTACT_POLL_SECONDS=0.5):
            yield url
    finally:
        fake.stop()


@contextmanager
def apollo_demo_resumed(campaign: Campaign):
    """The Apollo demo campaign active for the block, paused again after it whatever happens."""
    try:
        campaign_resume(campaign=campaign, now=timezone.now())
        yield campaign
    finally:
        campaign.refresh_from_db()
        campaign_pause(campaign=campaign, reason=APOLLO_DEMO_PAUSED, now=timezone.now())


def _demo_csv_copy(campaign: Campaign) -> str:
    """data/sample_leads.csv copied to CAM_IMPORT_DIR/<campaign id>/ (again only when the
    shipped file differs, so a second `make demo` sees the same file); its path there."""
    relative = f"{campaign.pk}/{Path(DEMO_CSV).name}"
    shipped, copy = Path(settings.BASE_DIR) / DEMO_CSV, import_dir() / relative
    if not copy.is_file() or not filecmp.cmp(shipped, copy, shallow=False):
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shipped, copy)
    return relative


def demo_login() -> tuple[str, str] | None:
    """A staff login for the console, only on the embedded SQLite database: a known password
    must never be created on a real (DATABASE_URL) database."""
    if not settings.CAM_EMBEDDED_DB:
        return None
    User = get_user_model()
    if not User.objects.filter(username=DEMO_USER).exists():
        User.objects.create_superuser(DEMO_USER, "demo@demo-studio.example", DEMO_PASSWORD)
    return DEMO_USER, DEMO_PASSWORD
