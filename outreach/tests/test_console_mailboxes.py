"""The console's and the admin's mailbox pages: each mailbox's sends today against its cap, its
warm-up day and last error; adding and editing with write-only passwords; the login check; a
campaign created with its mailboxes and lawful basis."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.tests.factories import CampaignFactory
from leads.tests.factories import LeadFactory
from outreach.models import Mailbox
from outreach.tests.factories import MailboxFactory, OutreachAttemptFactory

pytestmark = pytest.mark.django_db

FORM = {
    "name": "Sales 2", "kind": "smtp", "from_name": "Sam", "from_email": "sam@agency.example",
    "smtp_host": "smtp.agency.example", "smtp_port": "587", "smtp_security": "starttls", "smtp_username": "sam",
    "smtp_password": "first-secret", "esp_settings": "{}", "imap_port": "993", "imap_security": "ssl",
    "imap_inbox": "INBOX", "imap_sent": "Sent", "daily_cap": "30", "warmup_start": "0", "warmup_step": "0",
    "warmup_started_on": "2026-03-01", "min_gap_seconds": "120", "gap_jitter_seconds": "60",
    "window_days": ["0", "1", "2", "3", "4"], "window_start": "09:00", "window_end": "17:00",
    "timezone": "Europe/Paris", "active": "on",
}


@pytest.fixture
def operator(client):
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.org", "pw"))
    return client


def test_the_list_shows_sends_today_against_the_cap_the_warm_up_day_and_the_last_error(operator):
    warming = MailboxFactory(name="Warming", daily_cap=50, warmup_start=10, warmup_step=5,
                             warmup_started_on=timezone.localdate() - timedelta(days=2))
    broken = MailboxFactory(name="Broken", active=False, last_error="login refused: 535 bad credentials")
    for _ in range(3):
        OutreachAttemptFactory(mailbox=warming, lead=LeadFactory(), created_at=timezone.now())

    page = operator.get("/mailboxes").content.decode()

    row = page.split(f'data-mailbox="{warming.pk}"')[1].split("</tr>")[0]
    assert "3 / 20" in row and "day 3" in row  # 10, 15, 20: day 3 of the warm-up
    row = page.split(f'data-mailbox="{broken.pk}"')[1].split("</tr>")[0]
    assert "off" in row and "login refused: 535 bad credentials" in row


def test_a_mailbox_is_added_and_edited_with_its_password_kept_and_never_shown(operator):
    response = operator.post("/mailboxes/new", FORM)
    assert response.status_code == 302, response.context["form"].errors
    mailbox = Mailbox.objects.get()
    assert mailbox.smtp_password == "first-secret"

    page = operator.get(f"/mailboxes/{mailbox.pk}").content.decode()
    assert "first-secret" not in page
    response = operator.post(f"/mailboxes/{mailbox.pk}", {**FORM, "smtp_password": "", "daily_cap": "45"})
    assert response.status_code == 302
    mailbox.refresh_from_db()
    assert (mailbox.daily_cap, mailbox.smtp_password) == (45, "first-secret")


def test_invalid_settings_are_shown_next_to_their_fields_and_nothing_is_saved(operator):
    response = operator.post("/mailboxes/new", {**FORM, "smtp_host": "", "window_start": "25:99",
                                                "timezone": "Nowhere/City"})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert {"smtp_host", "window_start", "timezone"} <= set(errors)
    assert not Mailbox.objects.exists()


def test_the_test_button_shows_what_the_login_check_found(operator, smtp_servers):
    server = smtp_servers(username="sam", password="right")
    mailbox = MailboxFactory(smtp_port=server.port, smtp_username="sam", smtp_password="wrong")

    response = operator.post(f"/mailboxes/{mailbox.pk}/test", follow=True)

    page = response.content.decode()
    assert "SMTP</strong>: authentication failed" in page
    assert "IMAP</strong>: no IMAP server set" in page


def test_a_viewer_sees_the_mailboxes_but_cannot_change_or_test_them(client):
    user = get_user_model().objects.create_user("viewer", "v@example.org", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client.force_login(user)
    mailbox = MailboxFactory()

    assert client.get("/mailboxes").status_code == 200
    assert client.get(f"/mailboxes/{mailbox.pk}").status_code == 200
    assert client.post(f"/mailboxes/{mailbox.pk}", {**FORM, "daily_cap": "1"}).status_code == 403
    assert client.post(f"/mailboxes/{mailbox.pk}/test").status_code == 403
    assert client.get("/mailboxes/new").status_code == 403
    assert Mailbox.objects.get().daily_cap == mailbox.daily_cap


def test_a_campaign_is_created_with_its_mailboxes_and_lawful_basis(operator):
    first, _ = MailboxFactory(), MailboxFactory()
    response = operator.post("/campaigns/new", {
        "name": "Spring", "target_clients": "5", "target_mrr": "0", "channels_enabled": ["email"],
        "max_emails_per_day": "10", "qualification_threshold": "0.7", "max_attempts_per_lead": "3",
        "mailboxes": [str(first.pk)], "timezone": "Europe/Berlin", "lawful_basis": "",
        "lawful_basis_note": "B2B offer relevant to their role",
    })
    assert response.status_code == 302, response.context["form"].errors
    campaign = Campaign.objects.get()
    assert list(campaign.mailboxes.all()) == [first]
    assert (campaign.timezone, campaign.lawful_basis) == ("Europe/Berlin", "legitimate_interest")


def test_the_admin_keeps_a_password_left_blank_and_never_shows_it(operator):
    mailbox = MailboxFactory(smtp_password="admin-secret")
    campaign = CampaignFactory()
    page = operator.get(f"/admin/outreach/mailbox/{mailbox.pk}/change/").content.decode()
    assert "admin-secret" not in page
    data = {**FORM, "name": mailbox.name, "smtp_password": "", "campaigns": [str(campaign.pk)],
            "window_days": ["0", "6"]}
    response = operator.post(f"/admin/outreach/mailbox/{mailbox.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    mailbox.refresh_from_db()
    assert mailbox.smtp_password == "admin-secret" and mailbox.window_days == [0, 6]
    assert list(mailbox.campaigns.all()) == [campaign]
