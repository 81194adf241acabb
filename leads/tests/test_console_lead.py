"""The console's lead page and the campaign's needs-attention list: what staff see and record,
through the same services as the API (with the test client, as a browser would post)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cam_project.testing import read_only_staff, superuser
from campaigns.tests.factories import CampaignFactory
from campaigns.views import run_summary
from leads.models import TAG_DO_NOT_CONTACT, Lead, LeadEvent
from leads.tests.factories import LeadFactory
from outreach.attention import in_flight_window
from outreach.models import OutreachAttempt

pytestmark = pytest.mark.django_db
Sent = OutreachAttempt.Status


@pytest.fixture
def operator(client):
    client.force_login(superuser())
    return client


@pytest.fixture
def viewer(client):
    client.force_login(read_only_staff())
    return client


def test_the_lead_page_shows_its_emails_as_sent_and_its_history(operator):
    lead = LeadFactory(status=Lead.Status.CONTACTED, attempt_count=1)
    OutreachAttempt.objects.create(campaign=lead.campaign, lead=lead, step=1, status=Sent.SENT,
                                   subject="Idea for Acme", body="Hi Jane,\nan idea for Acme.")
    LeadEvent.objects.create(lead=lead, kind=LeadEvent.Kind.SENT, from_status="ENRICHED", to_status="CONTACTED",
                             reason="step 1: Idea for Acme", actor="cycle of campaign #1")

    page = operator.get(f"/leads/{lead.pk}").content.decode()

    assert "Idea for Acme" in page and "an idea for Acme." in page
    assert "ENRICHED → CONTACTED" in page and "cycle of campaign #1" in page
    for action in ("replied", "qualified", "lost", "do_not_contact"):
        assert f'value="{action}"' in page


@pytest.mark.parametrize("action, status", [("replied", "REPLIED"), ("qualified", "QUALIFIED"), ("lost", "LOST")])
def test_staff_record_an_outcome_from_the_lead_page_and_it_is_in_the_history(operator, action, status):
    lead = LeadFactory(next_action_at=timezone.now())

    response = operator.post(f"/leads/{lead.pk}/action", {"action": action})

    assert response.status_code == 302
    lead.refresh_from_db()
    assert (lead.status, lead.next_action_at) == (status, None)
    event = lead.events.get()
    assert (event.to_status, event.actor.startswith("staff ")) == (status, True)


def test_do_not_contact_then_resume_from_the_lead_page_is_refused_until_the_tag_is_gone(operator):
    lead = LeadFactory(next_action_at=timezone.now())
    operator.post(f"/leads/{lead.pk}/action", {"action": "do_not_contact"})
    page = operator.get(f"/leads/{lead.pk}").content.decode()
    assert 'value="resume"' not in page and "remove the tag first" in page

    response = operator.post(f"/leads/{lead.pk}/action", {"action": "resume"}, follow=True)
    assert "remove the tag first" in response.content.decode()
    lead.refresh_from_db()
    assert lead.next_action_at is None and TAG_DO_NOT_CONTACT in lead.tags


def test_a_viewer_sees_the_lead_but_no_buttons_and_cannot_post(viewer):
    lead = LeadFactory(next_action_at=None, stopped_reason="3 failed sends")
    page = viewer.get(f"/leads/{lead.pk}").content.decode()
    assert lead.email in page and 'id="lead-actions"' not in page
    assert viewer.post(f"/leads/{lead.pk}/action", {"action": "resume"}).status_code == 403


def test_the_campaign_page_lists_every_unresolved_send_and_resolves_one(operator):
    campaign = CampaignFactory()
    old = timezone.now() - in_flight_window() - timedelta(days=3)
    interrupted = LeadFactory(campaign=campaign, next_action_at=None, stopped_reason="sending step 1: …")
    attempt = OutreachAttempt.objects.create(campaign=campaign, lead=interrupted, step=1, status=Sent.CLAIMED,
                                             subject="Idea", created_at=old)
    running = LeadFactory(campaign=campaign, next_action_at=None)
    OutreachAttempt.objects.create(campaign=campaign, lead=running, step=1, status=Sent.CLAIMED,
                                   created_at=timezone.now())

    page = operator.get(f"/campaigns/{campaign.pk}").content.decode()
    assert "Needs attention: 2 sends" in page
    assert page.count('name="outcome" value="not_sent"') == 1  # the fresh claim may still be running
    assert "may still be in progress" in page

    operator.post(f"/attempts/{attempt.pk}/resolve", {"outcome": "not_sent", "next": f"/campaigns/{campaign.pk}"})
    attempt.refresh_from_db()
    interrupted.refresh_from_db()
    assert (attempt.status, attempt.resolution, attempt.resolved_by.is_superuser) == (Sent.NOT_SENT, "not_sent", True)
    assert interrupted.next_action_at is not None


def test_the_resolve_form_never_redirects_to_another_site(operator):
    lead = LeadFactory(next_action_at=None)
    attempt = OutreachAttempt.objects.create(campaign=lead.campaign, lead=lead, step=1, status=Sent.UNKNOWN)
    response = operator.post(f"/attempts/{attempt.pk}/resolve", {"outcome": "sent", "next": "https://evil.example/"})
    assert response.url == f"/campaigns/{lead.campaign_id}"


def test_the_admin_records_outcomes_and_resolutions_through_the_services(operator):
    lead = LeadFactory(next_action_at=timezone.now())
    operator.post("/admin/leads/lead/", {"action": "mark_replied", "_selected_action": [lead.pk]})
    lead.refresh_from_db()
    assert lead.status == Lead.Status.REPLIED and lead.events.get().kind == LeadEvent.Kind.REPLIED

    stopped = LeadFactory(next_action_at=None)
    attempt = OutreachAttempt.objects.create(campaign=stopped.campaign, lead=stopped, step=1, status=Sent.UNKNOWN)
    operator.post("/admin/outreach/outreachattempt/", {"action": "resolve_not_sent", "_selected_action": [attempt.pk]})
    attempt.refresh_from_db()
    stopped.refresh_from_db()
    assert attempt.status == Sent.NOT_SENT and stopped.next_action_at is not None


def test_saving_a_lead_in_the_admin_writes_only_the_changed_details(operator):
    lead = LeadFactory(first_name="Jane", next_action_at=timezone.now())
    form = operator.get(f"/admin/leads/lead/{lead.pk}/change/")
    assert form.status_code == 200
    # Meanwhile a cycle sends to the lead and moves it on.
    moved_on = timezone.now() + timedelta(days=3)
    Lead.objects.filter(pk=lead.pk).update(status=Lead.Status.CONTACTED, attempt_count=1, next_action_at=moved_on)

    data = {name: getattr(lead, name) or "" for name in ("first_name", "last_name", "company", "job_title",
                                                         "company_size", "industry")}
    data.update(first_name="Janet", source="", _save="Save",
                **{f"events-{k}": v for k, v in {"TOTAL_FORMS": 0, "INITIAL_FORMS": 0, "MIN_NUM_FORMS": 0,
                                                 "MAX_NUM_FORMS": 1000}.items()})
    response = operator.post(f"/admin/leads/lead/{lead.pk}/change/", data)

    assert response.status_code == 302, response.content.decode()[:2000]
    lead.refresh_from_db()
    assert (lead.first_name, lead.status, lead.attempt_count, lead.next_action_at) == (
        "Janet", Lead.Status.CONTACTED, 1, moved_on)


@pytest.mark.parametrize("result, level, text", [
    ({"dry_run": False, "outreach_sent": 0, "errors": [], "notes": ["daily quota of 20 already used"],
      "campaign_paused": False}, "info", "Live run: no email sent (daily quota of 20 already used)."),
    ({"dry_run": False, "outreach_sent": 3, "errors": [], "notes": [], "campaign_paused": False},
     "success", "LIVE: 3 emails sent."),
    ({"dry_run": True, "outreach_sent": 1, "errors": [], "notes": [], "campaign_paused": False},
     "success", "Dry run: would send 1 email; nothing was sent."),
])
def test_after_a_run_the_console_says_what_happened(result, level, text):
    assert run_summary(result) == (level, text)


def test_a_live_run_with_nothing_to_send_does_not_claim_emails_were_sent(operator, smtp_server):
    campaign = CampaignFactory()
    response = operator.post(f"/campaigns/{campaign.pk}/run", {"confirmed": "yes"}, follow=True)
    page = response.content.decode()
    assert "Live run: no email sent" in page and "LIVE: 0" not in page


def test_buttons_a_user_may_not_use_are_not_shown_on_the_campaign_page(client):
    from cam_project.testing import user_with_perms

    campaign = CampaignFactory()
    client.force_login(read_only_staff())
    page = client.get(f"/campaigns/{campaign.pk}").content.decode()
    assert 'id="run-form"' not in page and ">Pause<" not in page and "Sources in admin" not in page and ">Edit<" not in page

    client.force_login(user_with_perms("campaigns.view_campaign", "leads.add_lead"))
    page = client.get(f"/campaigns/{campaign.pk}").content.decode()
    assert 'id="run-form"' in page and 'type="checkbox" name="dry_run"' not in page
    assert "You may run dry runs only" in page
