"""One-click unsubscribe (SPEC §8, RFC 8058), from the link in a real email: GET shows a page and
changes nothing (scanners GET every link), POST suppresses the address at once in every campaign,
with no login and no CSRF token, as Gmail's one-click POST and a bare curl send it; a tampered,
truncated or foreign token is a 400 that changes nothing."""

import re
import shutil
import subprocess
from datetime import timedelta

import pytest
from urllib.parse import urlparse

import requests
from django.core import signing
from django.utils import timezone

from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.models import Lead, LeadEvent
from leads.tests.factories import LeadFactory
from outreach.models import Suppression
from outreach.sending import outreach_send_due
from outreach.tests.factories import MailboxFactory
from outreach.unsubscribe import unsubscribe_token

pytestmark = pytest.mark.django_db

ADDRESS = "pat@prospect.example"


@pytest.fixture
def mailed(smtp_servers, settings, live_server):
    """Pat got a real email from one campaign and is due in another: the link from that email."""
    settings.CAM_SITE_URL = live_server.url
    server = smtp_servers()
    mailbox = MailboxFactory(smtp_port=server.port)
    first, second = CampaignFactory(target_clients=100), CampaignFactory(target_clients=100)
    for campaign in (first, second):
        MessageStepFactory(campaign=campaign, position=1)
        MessageStepFactory(campaign=campaign, position=2)
        mailbox.campaigns.add(campaign)
    now = timezone.now()
    LeadFactory(campaign=first, email=ADDRESS, score=0.5, next_action_at=now - timedelta(minutes=1))
    LeadFactory(campaign=second, email=ADDRESS, score=0.5, next_action_at=now + timedelta(days=2))
    assert outreach_send_due(campaign=first, now=now, dry_run=False).sent == 1
    (message,) = server.messages
    link = re.search(r"<(http[^>]+)>", message["List-Unsubscribe"]).group(1)
    assert link in message.get_content()
    return link


def leads_due() -> list:
    return list(Lead.objects.filter(email=ADDRESS).values_list("next_action_at", flat=True))


def test_get_shows_a_confirmation_and_changes_nothing(client, mailed):
    before = leads_due()

    response = client.get(urlparse(mailed).path)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Unsubscribe?" in page and "p***@prospect.example" in page and ADDRESS not in page
    assert not Suppression.objects.exists() and leads_due() == before


def test_a_bare_one_click_post_as_gmail_sends_it_suppresses_the_address_in_every_campaign(mailed):
    response = requests.post(mailed, data="List-Unsubscribe=One-Click",
                             headers={"Content-Type": "application/x-www-form-urlencoded"}, allow_redirects=False,
                             timeout=10)

    assert response.status_code == 200
    suppression = Suppression.objects.get(email=ADDRESS)
    assert suppression.reason == "unsubscribed" and "one-click" in suppression.note
    assert leads_due() == [None, None]
    assert LeadEvent.objects.filter(lead__email=ADDRESS, kind="stopped").count() == 2


def test_curl_x_post_unsubscribes_and_a_second_post_changes_nothing(mailed):
    if not shutil.which("curl"):
        pytest.fail("curl is missing (Debian's curl)")
    for _ in range(2):
        done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", mailed],
                              capture_output=True, text=True, timeout=30)
        assert done.stdout == "200", done
    assert Suppression.objects.filter(email=ADDRESS).count() == 1
    assert LeadEvent.objects.filter(lead__email=ADDRESS, kind="stopped").count() == 2  # not four


def test_an_address_suppressed_for_a_bounce_stays_so(client):
    Suppression.objects.create(email=ADDRESS, reason=Suppression.Reason.BOUNCED)
    response = client.post(f"/u/{unsubscribe_token(ADDRESS)}")
    assert response.status_code == 200 and "You are unsubscribed" in response.content.decode()
    assert Suppression.objects.get(email=ADDRESS).reason == "bounced"


@pytest.mark.parametrize("tamper", [
    lambda token: token[:-1],  # truncated
    lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # one character changed
    lambda token: token.split(":", 1)[0],  # the signature cut off
    lambda token: signing.dumps(ADDRESS, salt="another.salt", compress=True),  # signed for something else
    lambda token: signing.dumps({"email": ADDRESS}, salt="cam.outreach.unsubscribe"),  # not an address
    lambda token: "x" * 600,  # longer than any token
    lambda token: "%00%0d%0a",
])
def test_a_tampered_token_is_a_400_page_that_changes_nothing(client, tamper):
    due = timezone.now()
    LeadFactory(email=ADDRESS, next_action_at=due)
    token = tamper(unsubscribe_token(ADDRESS))
    for method in (client.get, client.post):
        response = method(f"/u/{token}")
        assert response.status_code == 400
        assert "not valid" in response.content.decode()
    assert not Suppression.objects.exists() and leads_due() == [due]


def test_the_pages_ask_for_no_login_and_other_methods_are_refused(client):
    token = unsubscribe_token(ADDRESS)
    assert client.head(f"/u/{token}").status_code == 200
    assert client.put(f"/u/{token}").status_code == 405
    assert not Suppression.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_in_a_browser_the_link_shows_a_page_and_its_button_unsubscribes(browser, mailed):
    from playwright.sync_api import expect

    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(mailed)
    expect(page.get_by_role("heading", name="Unsubscribe?")).to_be_visible()
    expect(page.get_by_text("p***@prospect.example")).to_be_visible()
    assert not Suppression.objects.exists()  # opening the link changed nothing

    page.get_by_role("button", name="Unsubscribe").click()

    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    assert Suppression.objects.get(email=ADDRESS).note == "unsubscribe page"
    assert leads_due() == [None, None]
    context.close()
