"""The operator console in a real browser (Debian's chromium driven by Playwright): log in,
create a campaign (after a validation error), upload leads, run a dry-run cycle and a confirmed
live one, pause and resume; add an Apollo source, preview its search and run it against the fake
local Apollo. Screenshots of each page go to artifacts/screenshots/."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail

from campaigns.models import Campaign
from outreach.models import OutreachAttempt

SHOTS = Path(settings.BASE_DIR) / "artifacts" / "screenshots"

pytestmark = pytest.mark.django_db(transaction=True)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_an_operator_runs_a_campaign_from_the_console(page, live_server):
    from playwright.sync_api import expect

    # Login is required: the dashboard sends us to the login page.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    shot(page, "01-login")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill("s3cret-pass")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("[data-stat=campaigns]")).to_have_text("0")
    shot(page, "02-dashboard-empty")

    # Create a campaign: a zero quota is refused next to its field, nothing is saved.
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Name", exact=True).fill("Spring outreach")
    page.get_by_label("Target niche").fill("B2B SaaS")
    page.get_by_label("Max emails per day").fill("0")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.locator("#id_max_emails_per_day_error")).to_contain_text("greater than or equal to 1")
    assert Campaign.objects.count() == 0
    shot(page, "03-create-invalid")
    page.get_by_label("Max emails per day").fill("5")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_role("heading", name=re.compile("Spring outreach"))).to_be_visible()
    expect(page.locator(".messages")).to_contain_text("created")
    campaign = Campaign.objects.get()

    # Upload the sample CSV: the report shows imported, duplicate and rejected rows with line numbers.
    page.get_by_role("link", name="Leads").click()
    page.get_by_label("CSV file with an email column").set_input_files(str(Path(settings.BASE_DIR) / "data" / "sample_leads.csv"))
    page.get_by_role("button", name="Import").click()
    report = page.locator("#import-report")
    expect(report.locator("[data-report=imported]")).to_have_text("50")
    expect(report.locator("[data-report=rejected]")).to_have_text("1")
    expect(report.locator("[data-report=duplicates]")).to_have_text("1")
    expect(report).to_contain_text("invalid email")
    shot(page, "04-leads-imported")
    page.get_by_label("Status").select_option("NEW")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("heading", name="50 leads")).to_be_visible()

    # A dry run (the default): the result is on the page, nothing is sent.
    page.goto(f"/campaigns/{campaign.pk}")
    expect(page.get_by_label("Dry run: render and count, send nothing")).to_be_checked()
    page.get_by_role("button", name="Run dry-run cycle").click()
    result = page.locator("#cycle-result")
    expect(result).to_contain_text("DRY RUN")
    expect(result.locator("[data-result=leads_enriched]")).to_have_text("50")
    expect(result.locator("[data-result=outreach_sent]")).to_have_text("5")
    expect(result).to_contain_text("Would send")
    expect(page.locator("[data-funnel=ENRICHED]")).to_have_text("50")
    assert mail.outbox == [] and not OutreachAttempt.objects.exists()
    shot(page, "05-detail-dry-run")

    # A live run asks first: dismissing sends nothing; accepting sends up to the quota.
    page.get_by_label("Dry run: render and count, send nothing").uncheck()
    button = page.get_by_role("button", name="Run LIVE cycle (sends email)")
    page.once("dialog", lambda dialog: dialog.dismiss())
    button.click()
    page.wait_for_timeout(300)
    assert mail.outbox == []
    page.once("dialog", lambda dialog: dialog.accept())
    button.click()
    expect(page.locator("#cycle-result")).to_contain_text("LIVE")
    expect(page.locator("[data-result=outreach_sent]")).to_have_text("5")
    assert len(mail.outbox) == 5
    expect(page.get_by_role("heading", name="Recent attempts")).to_be_visible()
    shot(page, "06-detail-live-run")

    # Pause and resume.
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("h1 .badge").first).to_have_text("Paused")
    expect(page.locator(".messages")).to_contain_text("Campaign paused")
    assert not Campaign.objects.get().active
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("h1 .badge").first).to_have_text("Active")
    assert Campaign.objects.get().active

    # Both runs are in the history; going live asks for the postal address and a confirmation
    # that names where the mail would go.
    expect(page.locator("#runs tbody tr")).to_have_count(2)
    live_form = page.locator("#live-form")
    expect(live_form).to_contain_text("through files in var/mail")
    live_form.get_by_label("Postal address for the email footer").fill("Agency Ltd, 1 Main Street, Berlin")
    page.get_by_role("button", name="Go live").click()  # the confirmation box is required: nothing is sent
    assert not Campaign.objects.get().live
    page.get_by_label("I confirm: scheduled cycles will send real email").check()
    page.get_by_role("button", name="Go live").click()
    expect(page.locator("h1 .badge.live")).to_have_text("LIVE")
    expect(page.locator(".messages")).to_contain_text("scheduled cycles now send real email")
    assert Campaign.objects.get().live
    shot(page, "06b-detail-live")
    page.get_by_role("button", name="Stop live sending (run dry)").click()
    expect(page.locator("h1 .badge.dry")).to_have_text("Dry")

    page.goto("/")
    expect(page.locator("[data-stat=leads]")).to_have_text("50")
    shot(page, "07-dashboard")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "08-dashboard-phone")
    page.goto(f"/campaigns/{campaign.pk}")
    shot(page, "09-detail-phone")


def test_a_newcomer_finds_the_demo_campaign_and_sees_what_a_dry_run_would_send(browser, live_server):
    from io import StringIO

    from django.core.management import call_command
    from playwright.sync_api import expect

    from campaigns.demo import DEMO_PASSWORD, DEMO_USER

    out = StringIO()
    call_command("cam_demo", stdout=out)  # what `make demo` runs
    if f"user '{DEMO_USER}', password '{DEMO_PASSWORD}'" not in out.getvalue():
        # The demo prints a login only on the embedded SQLite database (the PostgreSQL CI run).
        get_user_model().objects.create_superuser(DEMO_USER, "demo@example.org", DEMO_PASSWORD)
    page = browser.new_page(base_url=live_server.url, viewport={"width": 1280, "height": 900})

    page.goto("/")
    page.get_by_label("Username").fill(DEMO_USER)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Demo: web design for B2B SaaS").click()

    # The funnel at a glance: all 50 sample leads enriched, none contacted yet.
    expect(page.locator("[data-funnel=ENRICHED]")).to_have_text("50")
    expect(page.locator("[data-funnel=CONTACTED]")).to_have_text("0")
    page.get_by_role("button", name="Run dry-run cycle").click()
    result = page.locator("#cycle-result")
    expect(result).to_contain_text("DRY RUN")
    expect(result.locator("[data-result=outreach_sent]")).to_have_text("20")
    expect(result.get_by_role("row", name=re.compile("maya.chen@brightloop.example"))).to_contain_text("Idea for BrightLoop")
    assert mail.outbox == []
    shot(page, "10-demo-dry-run")
    page.close()


def test_an_operator_adds_an_apollo_source_previews_its_search_and_runs_a_cycle(page, fake_providers, settings):
    """An Apollo source set up in the console alone, against the fake local Apollo: the preview
    shows people and reveals nobody; the cycle then reveals within the budget."""
    from playwright.sync_api import expect

    from leads.models import ApiUsage, Lead

    settings.CAM_DROPCONTACT_WAIT_SECONDS = 5
    campaign = Campaign.objects.create(name="Apollo outreach", apollo_credits_per_day=12)
    page.goto("/login/")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill("s3cret-pass")
    page.get_by_role("button", name="Log in").click()
    page.goto(f"/campaigns/{campaign.pk}")
    page.get_by_role("link", name="Add Apollo source").click()

    page.get_by_label("Name", exact=True).fill("SaaS leaders")
    page.get_by_label("Job titles").fill("CEO, Head of Growth")
    page.get_by_label("C-suite").check()
    page.get_by_label("11–20").check()
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-people tbody tr")).to_have_count(10)
    expect(page.locator("#preview-people")).to_contain_text("Maya Chen")
    expect(page.locator("[data-preview=total]")).to_have_text("240")
    assert fake_providers.revealed_ids == [] and not Lead.objects.exists() and not ApiUsage.objects.exists()
    shot(page, "20-apollo-preview")
    page.set_viewport_size({"width": 390, "height": 800})
    shot(page, "21-apollo-preview-phone")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_role("button", name="Add source").click()
    expect(page.locator("#lead-sources")).to_contain_text("SaaS leaders")
    source = campaign.lead_sources.get()
    assert source.settings == {"person_titles": ["CEO", "Head of Growth"], "person_seniorities": ["c_suite"],
                               "organization_num_employees_ranges": ["11,20"], "per_cycle": 25}

    page.get_by_role("button", name="Run dry-run cycle").click()
    expect(page.locator("[data-provider=apollo]")).to_contain_text("12")
    assert len(fake_providers.revealed_ids) == 12  # the budget, not per_cycle (25)
    assert Lead.objects.filter(campaign=campaign).count() == 11  # person 6 has no address
    shot(page, "22-apollo-after-cycle")
