"""A new operator runs a campaign in the console alone, in a real browser (Debian's chromium,
Playwright): create it, edit it, write two steps with their preview, send a test to themself
(aiosmtpd), upload leads, go live with the confirmation, run a live cycle, watch the trends and
the inbox, export the leads. Each page is shot at desktop and phone widths for layout review."""

import csv
import io
import re
from pathlib import Path

import pytest
from django.conf import settings

from campaigns.models import Campaign, MessageStep
from cam_project.tests.test_console_browser import shot
from conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def both(page, name: str) -> None:
    shot(page, f"40-{name}")
    page.set_viewport_size(PHONE)
    shot(page, f"40-{name}-phone")
    page.set_viewport_size(DESKTOP)


def test_a_new_operator_runs_a_campaign_end_to_end_in_the_console(page, smtp_server):
    from playwright.sync_api import expect

    log_in(page)

    # Create, then edit: the qualification mode explained, the postal address the footer needs.
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Name", exact=True).fill("Agency outreach")
    page.get_by_label("Max emails per day").fill("3")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.locator(".messages")).to_contain_text("created")
    campaign = Campaign.objects.get()
    page.get_by_role("link", name="Edit", exact=True).click()
    page.get_by_label("Target clients").fill("5")
    page.get_by_label("Postal address").fill("Agency Ltd, 1 Main Street, Berlin")
    page.get_by_label("Reply: only when staff mark a reply as interested").check()
    both(page, "edit")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".messages")).to_contain_text("Campaign saved.")
    campaign.refresh_from_db()
    assert (campaign.target_clients, campaign.qualify_on) == (5, "reply")

    # Upload leads, so the preview has someone to render for.
    page.get_by_role("link", name="Leads").first.click()
    page.get_by_label("CSV file with an email column").set_input_files(
        str(Path(settings.BASE_DIR) / "data" / "sample_leads.csv"))
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-report [data-report=imported]")).to_have_text("50")
    both(page, "leads")

    # Two steps, each written with its preview; a test of the first to the operator's address.
    page.goto(f"/campaigns/{campaign.pk}")
    page.get_by_role("link", name="Sequence").click()
    step = page.locator("fieldset.step").first
    step.get_by_label("Subject").fill("Idea for {{ company }}")
    step.get_by_label("Body").fill("Hi {{ first_name }}, one idea for {{ company }}.")
    expect(step.locator("[data-preview]")).to_contain_text("Agency Ltd, 1 Main Street, Berlin")
    step.get_by_role("button", name="Send a test to me").click()
    expect(step.locator("[data-test-result]")).to_contain_text("Test sent to op@agency.example")
    assert [m["To"] for m in smtp_server.messages] == ["op@agency.example"]
    page.get_by_role("button", name="Save the sequence").click()
    expect(page.locator(".messages")).to_contain_text("Sequence saved: 1 step.")
    follow_up = page.locator("fieldset.step").nth(1)
    follow_up.get_by_label("Subject").fill("Re: Idea for {{ company }}")
    follow_up.get_by_label("Body").fill("Any thoughts, {{ first_name }}?")
    expect(follow_up.locator("[data-preview]")).to_contain_text("Any thoughts,")
    both(page, "sequence")
    page.get_by_role("button", name="Save the sequence").click()
    expect(page.locator(".messages")).to_contain_text("Sequence saved: 2 steps.")
    assert list(MessageStep.objects.filter(campaign=campaign).values_list("position", "subject_template")) == [
        (1, "Idea for {{ company }}"), (2, "Re: Idea for {{ company }}")]

    # Go live (the box must be ticked), then a live cycle, confirmed.
    page.goto(f"/campaigns/{campaign.pk}")
    page.get_by_label("I confirm: scheduled cycles will send real email").check()
    page.get_by_role("button", name="Go live").click()
    expect(page.locator("h1 .badge.live")).to_have_text("LIVE")
    page.get_by_label("Dry run: render and count, send nothing").uncheck()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Run LIVE cycle (sends email)").click()
    expect(page.locator("[data-result=outreach_sent]")).to_have_text("3")
    assert len(smtp_server.messages) == 4  # the test, then three leads
    expect(page.locator("#trends")).to_contain_text("3 sent")
    both(page, "campaign")

    page.get_by_role("link", name="Inbox").first.click()
    expect(page.get_by_role("heading", name=re.compile("Inbox"))).to_be_visible()
    both(page, "inbox")

    # Export the contacted leads.
    page.goto(f"/campaigns/{campaign.pk}/leads?status=CONTACTED")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export these leads (CSV)").click()
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3 and {row["status"] for row in rows} == {"CONTACTED"}
    assert all(row["emails_sent"] == "1" for row in rows)

    page.goto("/")
    expect(page.locator("[data-stat=leads]")).to_have_text("50")
    both(page, "dashboard")
