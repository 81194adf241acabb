"""The sequence editor in a real browser (Debian's chromium, Playwright): the preview follows
what the operator types, for the lead picked, with the footer; a template error shows at once;
the saved sequence is what the campaign sends."""

import pytest

from campaigns.models import MessageStep
from campaigns.tests.factories import CampaignFactory
from cam_project.tests.test_console_browser import shot
from conftest import log_in
from leads.tests.factories import LeadFactory
from outreach.models import OutreachAttempt
from outreach.tests.factories import MailboxFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_operator_writes_a_step_watches_its_preview_and_sends_a_test_to_themself(page, smtp_servers):
    from playwright.sync_api import expect

    campaign = CampaignFactory(name="Spring", postal_address="Agency Ltd, 1 Road, Paris", sender_name="Alex",
                               sender_email="alex@agency.example")
    LeadFactory(campaign=campaign, email="maya@brightloop.example", first_name="Maya", company="BrightLoop",
                score=0.9)
    smtp = smtp_servers()
    MailboxFactory(name="Sales box", smtp_port=smtp.port, from_email="alex@agency.example").campaigns.add(campaign)
    log_in(page)
    page.goto(f"/campaigns/{campaign.pk}")
    page.get_by_role("link", name="Sequence").click()

    step = page.locator("fieldset.step").first
    step.get_by_label("Subject").fill("Idea for {{ company }}")
    step.get_by_label("Body").fill("Hi {{ first_name }}, a short note.")
    preview = step.locator("[data-preview]")
    expect(preview).to_contain_text("Idea for BrightLoop")
    expect(preview).to_contain_text("Hi Maya, a short note.")
    expect(preview).to_contain_text("Agency Ltd, 1 Road, Paris")
    expect(preview).to_contain_text("From Alex <alex@agency.example> to maya@brightloop.example")
    page.get_by_label("Preview for").select_option("")
    expect(preview).to_contain_text("Hi there, a short note.")
    step.get_by_label("Body").fill("Hi {{ frist_name }}")
    expect(preview).to_contain_text("unknown variable {{ frist_name }}")
    shot(page, "30-sequence-error")
    step.get_by_label("Body").fill("Hi {{ first_name }}, a short note.")
    expect(preview).to_contain_text("Hi there, a short note.")
    shot(page, "31-sequence-preview")
    step.get_by_role("button", name="Send a test to me").click()
    expect(step.locator("[data-test-result]")).to_contain_text("Test sent to op@agency.example through Sales box.")
    (test,) = smtp.messages
    assert (test["To"], test["Subject"]) == ("op@agency.example", "[Test] Idea for your company")
    assert not OutreachAttempt.objects.exists()  # a test is never an attempt
    page.get_by_role("button", name="Save the sequence").click()
    expect(page.locator(".messages")).to_contain_text("Sequence saved: 1 step.")
    assert list(MessageStep.objects.filter(campaign=campaign).values_list("subject_template", flat=True)) == [
        "Idea for {{ company }}"]
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "32-sequence-phone")
