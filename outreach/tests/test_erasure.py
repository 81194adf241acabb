"""Erasing a person (GDPR, SPEC §8): POST /api/cam/erasure and the admin action delete their leads
in every campaign, keep their attempts without personal fields (today's quota unchanged), scrub
import reports and run previews, keep only a suppression, and report what they removed. Leads
record where they came from and when, from every entry point."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from cam_project.testing import superuser, token_client, user_with_perms
from campaigns.models import CycleRun
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.models import ImportJob, Lead, LeadEvent
from leads.tests.factories import LeadFactory
from outreach.limits import quota_used
from outreach.models import InboundMessage, OutreachAttempt, Suppression
from outreach.sending import outreach_send_due

pytestmark = pytest.mark.django_db
PERSON = "Pat.Doe@Prospect.example"


@pytest.fixture
def api():
    return token_client(superuser())


def test_erasure_deletes_the_persons_leads_everywhere_and_keeps_only_a_suppression(api, smtp_server):
    now = timezone.now()
    first, second = CampaignFactory(name="First"), CampaignFactory(name="Second")
    MessageStepFactory(campaign=first, position=1, subject_template="Idea for {{ company }}")
    pat = LeadFactory(campaign=first, email="pat.doe@prospect.example", score=0.5, company="Doe Industries",
                      next_action_at=now - timedelta(minutes=1))
    LeadFactory(campaign=second, email="pat.doe@prospect.example")
    other = LeadFactory(campaign=first, email="someone@else.example", next_action_at=None)
    assert outreach_send_due(campaign=first, now=now, dry_run=False).sent == 1
    used = quota_used(campaign=first, now=now)
    CycleRun.objects.create(campaign=first, trigger="api", dry_run=True, holder="h", started_at=now,
                            result={"previews": [{"email": "pat.doe@prospect.example", "subject": "Idea"},
                                                 {"email": "someone@else.example", "subject": "Idea"}],
                                    "notes": ["pat.doe@prospect.example: step 1 was already sent"], "errors": []})
    ImportJob.objects.create(campaign=first, path="x.csv", file_name="x.csv", status="done",
                             report={"imported": 1, "duplicate_rows": [
                                 {"line": 3, "email": "pat.doe@prospect.example", "reason": "repeats line 2"}]})

    InboundMessage.objects.create(kind="reply", lead=pat, from_email="pat.doe@prospect.example", text="Call me")
    InboundMessage.objects.create(kind="bounce", bounce_recipient="pat.doe@prospect.example", bounce_hard=True)
    InboundMessage.objects.create(kind="reply", from_email="someone@else.example", text="Hello")

    response = api.post("/api/cam/erasure", {"email": PERSON}, format="json")

    assert response.status_code == 200, response.content
    report = response.json()
    assert report["email"] == "pat.doe@prospect.example" and report["leads_deleted"] == 2
    assert report["inbound_deleted"] == 2
    assert list(InboundMessage.objects.values_list("from_email", flat=True)) == ["someone@else.example"]
    assert report["campaigns"] == ["First", "Second"] and report["attempts_scrubbed"] == 1
    assert report["runs_scrubbed"] == 1 and report["import_reports_scrubbed"] == 1 and report["suppression"] == "added"
    assert not Lead.objects.filter(email="pat.doe@prospect.example").exists()
    assert not LeadEvent.objects.filter(lead_id=pat.pk).exists()
    attempt = OutreachAttempt.objects.get(campaign=first)
    assert (attempt.lead_id, attempt.subject, attempt.body, attempt.status) == (None, "", "", "sent")
    assert quota_used(campaign=first, now=now) == used  # the day's count is still true
    run = CycleRun.objects.get()
    assert [p["email"] for p in run.result["previews"]] == ["someone@else.example"] and run.result["notes"] == []
    assert ImportJob.objects.get().report["duplicate_rows"][0]["email"] == "(erased)"
    assert Suppression.objects.get(email="pat.doe@prospect.example").note.startswith("erased (GDPR)")
    assert Lead.objects.filter(pk=other.pk).exists()
    # The campaign's pages still show the kept attempt, without the person.
    client = api
    assert client.get(f"/api/cam/campaigns/{first.pk}/attempts").json()["results"][0]["lead"] is None


def test_an_erased_person_is_never_imported_again_and_a_second_erasure_finds_nothing(api, tmp_path):
    campaign = CampaignFactory()
    api.post("/api/cam/erasure", {"email": PERSON}, format="json")
    csv = tmp_path / "again.csv"
    csv.write_text(f"email,first_name\n{PERSON},Pat\nnew@person.example,New\n")
    call_command("import_leads", "--campaign-id", str(campaign.pk), str(csv), stdout=open("/dev/null", "w"))

    assert list(Lead.objects.values_list("email", flat=True)) == ["new@person.example"]
    again = api.post("/api/cam/erasure", {"email": PERSON}, format="json").json()
    assert again["leads_deleted"] == 0 and again["suppression"] == "already suppressed (manual)"


@pytest.mark.parametrize("body", [{}, {"email": ""}, {"email": "not-an-address"}, {"email": "x" * 400 + "@a.example"},
                                  {"email": ["a@b.example"]}, {"email": {"$ne": 1}}])
def test_an_invalid_erasure_request_is_a_400_and_changes_nothing(api, body):
    LeadFactory(email="kept@person.example")
    response = api.post("/api/cam/erasure", body, format="json")
    assert response.status_code == 400 and "email" in response.json()
    assert Lead.objects.count() == 1 and not Suppression.objects.exists()


def test_erasure_needs_both_permissions():
    LeadFactory(email="pat.doe@prospect.example")
    only_delete = token_client(user_with_perms("leads.delete_lead", "leads.view_lead"))
    assert only_delete.post("/api/cam/erasure", {"email": PERSON}, format="json").status_code == 403
    both = token_client(user_with_perms("leads.delete_lead", "outreach.add_suppression"))
    assert both.post("/api/cam/erasure", {"email": PERSON}, format="json").status_code == 200
    assert not Lead.objects.exists()


def test_the_admin_action_erases_the_selected_people(client):
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.org", "pw"))
    pat, kim = LeadFactory(email="pat@a.example"), LeadFactory(email="kim@b.example")
    LeadFactory(email="pat@a.example")  # in another campaign

    response = client.post("/admin/leads/lead/", {"action": "erase_people", "_selected_action": [pat.pk]}, follow=True)

    assert "1 people erased: 2 lead(s) deleted" in response.content.decode()
    assert list(Lead.objects.values_list("email", flat=True)) == ["kim@b.example"]
    assert Suppression.objects.filter(email="pat@a.example").exists() and kim.pk


def test_every_entry_point_records_where_a_lead_came_from_and_when(api, tmp_path, settings):
    from leads.models import LeadSource

    campaign = CampaignFactory()
    csv = tmp_path / "people.csv"
    csv.write_text("email\ncommand@x.example\n")
    call_command("import_leads", "--campaign-id", str(campaign.pk), str(csv), stdout=open("/dev/null", "w"))
    api.post(f"/api/cam/campaigns/{campaign.pk}/leads", {"email": "api@x.example"}, format="json")
    (settings.CAM_IMPORT_DIR / "src").mkdir(parents=True, exist_ok=True)
    (settings.CAM_IMPORT_DIR / "src" / "list.csv").write_text("email\nsource@x.example\n")
    LeadSource.objects.create(campaign=campaign, name="Main list", kind="csv", settings={"path": "src/list.csv"})
    from leads.importing import leads_discover

    leads_discover(campaign=campaign, now=timezone.now(), limit=10)

    origins = dict(Lead.objects.values_list("email", "origin"))
    assert origins["command@x.example"] == "import_leads of people.csv"
    assert origins["api@x.example"].startswith("API, by ")
    assert origins["source@x.example"] == "CSV source “Main list” (list.csv)"
    assert all(lead.collected_at for lead in Lead.objects.all())
    shown = api.get(f"/api/cam/leads/{Lead.objects.get(email='api@x.example').pk}").json()
    assert shown["origin"].startswith("API, by ") and shown["collected_at"]
