"""The console's inbox in a real browser (Debian's chromium, Playwright): a campaign's replies,
out-of-office replies and bounces with what CAM did, a reclassification and its effects, the
outcome of a reply; the campaign form explains qualification by score or by reply."""

from pathlib import Path

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from cam_project.tests.test_console_browser import shot
from conftest import log_in
from leads.models import Lead
from leads.tests.factories import LeadFactory
from outreach.inbound import message_parse
from outreach.models import InboundMessage, Suppression
from outreach.replies import inbound_store
from outreach.sending import outreach_send_due

pytestmark = pytest.mark.django_db(transaction=True)
MAIL = Path(__file__).parent / "mail"


def receive(name: str, original: str, lead: Lead) -> InboundMessage:
    raw = (MAIL / name).read_text().replace(original, lead.attempts.get(step=1).message_id)
    return inbound_store(parsed=message_parse(raw.encode()), now=timezone.now())


def test_an_operator_reads_the_inbox_reclassifies_a_message_and_records_an_interested_reply(page, smtp_server):
    from playwright.sync_api import expect

    campaign = CampaignFactory(name="Spring", max_emails_per_day=50, target_clients=100)
    for position in (1, 2):
        MessageStepFactory(campaign=campaign, position=position, delay_days=2)
    now = timezone.now()
    jane, hans = (LeadFactory(campaign=campaign, email=email, score=0.5, next_action_at=now)
                  for email in ("jane@acme.example", "hans@firma.example"))
    assert outreach_send_due(campaign=campaign, now=now, dry_run=False).sent == 2
    ooo = receive("ooo_auto_submitted.eml", "<177313.1@agency.example>", jane)
    reply = receive("outlook_reply_de.eml", "<177313.2@agency.example>", hans)

    log_in(page)
    page.goto(f"/campaigns/{campaign.pk}")
    page.locator(".titlebar").get_by_role("link", name="Inbox").click()
    expect(page.get_by_role("heading", name="Inbox: Spring")).to_be_visible()
    ooo_row, reply_row = page.locator(f"[data-inbound='{ooo.pk}']"), page.locator(f"[data-inbound='{reply.pk}']")
    expect(ooo_row).to_contain_text("Auto-reply (out of office)")
    expect(ooo_row).to_contain_text("next email delayed")
    expect(ooo_row).to_contain_text("Auto-Submitted: auto-replied")
    expect(reply_row).to_contain_text("AW: Idee für Firma")
    expect(reply_row).to_contain_text("REPLIED")
    shot(page, "20-inbox")

    # The out-of-office was really a "please stop" in disguise: an unsubscribe request.
    ooo_row.get_by_label("It is").select_option("unsubscribe")
    ooo_row.get_by_role("button", name="Reclassify").click()
    expect(page.locator(".msg.success, .messages").first).to_contain_text("is now unsubscribe request")
    assert Suppression.objects.get().email == "jane@acme.example"
    assert InboundMessage.objects.get(pk=ooo.pk).kind == "unsubscribe"

    reply_row = page.locator(f"[data-inbound='{reply.pk}']")
    reply_row.get_by_role("button", name="Interested (qualified)").click()
    expect(page.locator(f"[data-inbound='{reply.pk}']")).to_contain_text("QUALIFIED")
    assert Lead.objects.get(pk=hans.pk).status == Lead.Status.QUALIFIED

    page.get_by_label("Kind").select_option("unsubscribe")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#inbox tbody tr")).to_have_count(1)
    shot(page, "21-inbox-filtered")


def test_the_campaign_form_explains_qualifying_on_score_or_reply(page):
    from playwright.sync_api import expect

    log_in(page)
    page.goto("/campaigns/new")
    expect(page.get_by_text("only when staff mark a reply as interested")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("By replies")
    page.get_by_label("Reply: only when staff mark a reply as interested").check()
    page.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_text("Qualified on")).to_be_visible()
    assert Campaign.objects.get().qualify_on == "reply"
