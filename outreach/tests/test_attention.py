"""Interrupted sends are visible and resolvable; stopped leads can be resumed; every change is in
the lead's history (SPEC §6). Through the real entry points: cycles against a real SMTP server, a
process killed mid-send, the API, the console and the admin."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.utils import timezone

from cam_project.testing import superuser, token_client, user_with_perms
from campaigns.models import Campaign, CycleLease
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.models import TAG_DO_NOT_CONTACT, Lead, LeadEvent
from leads.services import followup_delay
from leads.tests.factories import LeadFactory
from outreach.attention import in_flight_window
from outreach.models import OutreachAttempt, Suppression

pytestmark = pytest.mark.django_db
Sent = OutreachAttempt.Status


@pytest.fixture
def api(db):
    return token_client(superuser())


def live_cycle(api, campaign):
    response = api.post(f"/api/cam/campaigns/{campaign.pk}/run-cycle?dry_run=false")
    assert response.status_code == 200, response.content
    return response.json()


def campaign_with_steps(**fields):
    campaign = CampaignFactory(target_clients=100, qualification_threshold=1.0, **fields)
    MessageStepFactory(campaign=campaign, position=1, delay_days=0)
    MessageStepFactory(campaign=campaign, position=2, delay_days=3)
    return campaign


def unknown_send(api, smtp_server, campaign):
    """A real cycle whose connection breaks after the message was handed over."""
    lead = LeadFactory(campaign=campaign, score=0.5, next_action_at=timezone.now() - timedelta(minutes=1))
    smtp_server.disconnect_after_data = True
    result = live_cycle(api, campaign)
    smtp_server.disconnect_after_data = False
    assert (result["outreach_unknown"], result["outreach_failed"], result["stopped_phases"]) == (1, 0, ["outreach"])
    return lead, OutreachAttempt.objects.get(lead=lead)


def test_unknown_sends_are_listed_for_staff_with_their_lead_stopped_and_its_reason(api, smtp_server):
    campaign = campaign_with_steps()
    lead, attempt = unknown_send(api, smtp_server, campaign)

    page = api.get(f"/api/cam/campaigns/{campaign.pk}/attempts?status=claimed,unknown").json()
    assert [row["id"] for row in page["results"]] == [attempt.pk]
    assert page["results"][0]["body"].startswith("Hi Jane")  # the text as sent
    assert api.get(f"/api/cam/campaigns/{campaign.pk}").json()["needs_attention"] == 1
    body = api.get(f"/api/cam/leads/{lead.pk}").json()
    assert body["next_action_at"] is None and "may or may not have been sent" in body["stopped_reason"]


def test_an_unknown_send_resolved_as_not_sent_makes_the_lead_due_and_the_step_is_sent_again(api, smtp_server):
    campaign = campaign_with_steps()
    lead, attempt = unknown_send(api, smtp_server, campaign)
    smtp_server.messages.clear()

    response = api.post(f"/api/cam/attempts/{attempt.pk}/resolve", {"outcome": "not_sent"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["resolution"], body["resolved_by"]) == ("not_sent", "not_sent", "admin" + body["resolved_by"][5:])
    assert body["resolved_at"] is not None
    lead.refresh_from_db()
    assert lead.next_action_at is not None and lead.stopped_reason == ""
    assert live_cycle(api, campaign)["outreach_sent"] == 1
    assert smtp_server.recipients() == [lead.email]
    assert OutreachAttempt.objects.filter(lead=lead, step=1, status=Sent.SENT).count() == 1


def test_an_unknown_send_resolved_as_sent_moves_the_lead_on_and_its_next_step_waits_its_delay(api, smtp_server):
    campaign = campaign_with_steps()
    lead, attempt = unknown_send(api, smtp_server, campaign)

    api.post(f"/api/cam/attempts/{attempt.pk}/resolve", {"outcome": "sent"}, format="json")

    lead.refresh_from_db()
    assert (lead.status, lead.attempt_count) == (Lead.Status.CONTACTED, 1)
    assert lead.next_action_at == attempt.created_at + followup_delay(3, lead.score)
    smtp_server.messages.clear()
    assert live_cycle(api, campaign)["outreach_sent"] == 0  # step 2 is days away
    kinds = list(lead.events.values_list("kind", flat=True))
    assert kinds[-2:] == [LeadEvent.Kind.SEND_UNKNOWN, LeadEvent.Kind.RESOLVED]


def test_a_resolution_is_refused_for_a_sent_attempt_and_for_a_claim_that_may_still_be_in_progress(api):
    lead = LeadFactory()
    sent = OutreachAttempt.objects.create(campaign=lead.campaign, lead=lead, step=1, status=Sent.SENT)
    fresh = OutreachAttempt.objects.create(campaign=lead.campaign, lead=lead, step=2, status=Sent.CLAIMED,
                                           created_at=timezone.now())

    refused = api.post(f"/api/cam/attempts/{sent.pk}/resolve", {"outcome": "not_sent"}, format="json")
    in_flight = api.post(f"/api/cam/attempts/{fresh.pk}/resolve", {"outcome": "not_sent"}, format="json")
    invalid = api.post(f"/api/cam/attempts/{fresh.pk}/resolve", {"outcome": "maybe"}, format="json")

    assert refused.status_code == 409 and "only claimed or unknown" in refused.json()["detail"]
    assert in_flight.status_code == 409 and "may still be in progress" in in_flight.json()["detail"]
    assert invalid.status_code == 400 and "outcome" in invalid.json()
    assert set(OutreachAttempt.objects.values_list("status", flat=True)) == {Sent.SENT, Sent.CLAIMED}


def test_resolving_needs_the_change_permission_on_attempts(db):
    lead = LeadFactory()
    attempt = OutreachAttempt.objects.create(campaign=lead.campaign, lead=lead, step=1, status=Sent.UNKNOWN)
    viewer = token_client(user_with_perms("outreach.view_outreachattempt"))
    assert viewer.post(f"/api/cam/attempts/{attempt.pk}/resolve", {"outcome": "sent"}, format="json").status_code == 403
    attempt.refresh_from_db()
    assert attempt.status == Sent.UNKNOWN


# --- a process killed mid-send ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_send_interrupted_by_a_killed_process_is_flagged_with_its_reason_and_resolvable(
    smtp_server, database_url, now
):
    campaign = campaign_with_steps()
    lead = LeadFactory(campaign=campaign, score=0.5, next_action_at=timezone.now() - timedelta(minutes=1))
    got_data, hold = threading.Event(), asyncio.Event()

    async def take_the_message_and_hang(server, session, envelope):
        got_data.set()
        try:
            await asyncio.wait_for(hold.wait(), timeout=30)
        except asyncio.TimeoutError:
            pass
        return "250 OK"

    smtp_server.handle_DATA = take_the_message_and_hang
    env = {**os.environ, "DATABASE_URL": database_url, "EMAIL_HOST": "127.0.0.1",
           "EMAIL_PORT": str(smtp_server.port), "CAM_LOG_LEVEL": "ERROR"}
    worker = subprocess.Popen([sys.executable, "manage.py", "run_cam_cycle", "--campaign-id", str(campaign.pk),
                               "--no-dry-run"], cwd=django_settings.BASE_DIR, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert got_data.wait(timeout=60)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)

    attempt = OutreachAttempt.objects.get(lead=lead)
    lead.refresh_from_db()
    assert attempt.status == Sent.CLAIMED
    assert lead.next_action_at is None and lead.stopped_reason.startswith("sending step 1: if this stays")
    api = token_client(superuser())
    listed = api.get(f"/api/cam/campaigns/{campaign.pk}/attempts?status=claimed,unknown").json()["results"]
    assert [row["id"] for row in listed] == [attempt.pk]
    # The killed cycle still holds the campaign's lease: another cycle is refused until it expires.
    refused = api.post(f"/api/cam/campaigns/{campaign.pk}/run-cycle?dry_run=false")
    assert refused.status_code == 409 and refused.json()["already_running"] is True
    CycleLease.objects.filter(pk=campaign.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    # Taken over, and never retried by the engine, even much later.
    assert live_cycle(api, campaign)["outreach_sent"] == 0
    # Once it cannot be in progress any more, staff resolve it.
    OutreachAttempt.objects.filter(pk=attempt.pk).update(created_at=timezone.now() - in_flight_window())
    assert api.post(f"/api/cam/attempts/{attempt.pk}/resolve", {"outcome": "sent"},
                    format="json").status_code == 200
    lead.refresh_from_db()
    assert (lead.status, lead.attempt_count, lead.stopped_reason) == (Lead.Status.CONTACTED, 1, "")


# --- resuming stopped leads ------------------------------------------------------------------------


def resume(api, lead):
    return api.post(f"/api/cam/leads/{lead.pk}/resume")


@pytest.mark.parametrize("state, reason", [
    ({"status": Lead.Status.REPLIED}, "is finished"),
    ({"status": Lead.Status.QUALIFIED}, "is finished"),
    ({"status": Lead.Status.LOST}, "is finished"),
    ({"tags": [TAG_DO_NOT_CONTACT]}, "remove the tag first"),
    ({"next_action_at": "due"}, "not stopped"),
])
def test_resuming_is_refused_with_the_reason_for_finished_do_not_contact_or_running_leads(api, state, reason):
    state = {**state, "next_action_at": timezone.now() if state.get("next_action_at") else None}
    lead = LeadFactory(stopped_reason="whatever", **state)
    response = resume(api, lead)
    assert response.status_code == 409 and reason in response.json()["detail"]


def test_a_suppressed_lead_is_refused_until_the_suppression_is_removed(api, smtp_server):
    campaign = campaign_with_steps()
    lead = LeadFactory(campaign=campaign, email="back@x.example", next_action_at=timezone.now())
    api.post("/api/cam/suppressions", {"email": "back@x.example"}, format="json")

    refused = resume(api, lead)
    assert refused.status_code == 409 and "suppression list" in refused.json()["detail"]

    api.delete("/api/cam/suppressions?email=back@x.example")
    assert resume(api, lead).status_code == 200
    assert live_cycle(api, campaign)["outreach_sent"] == 1
    assert smtp_server.recipients() == ["back@x.example"]


def test_a_lead_stopped_by_failed_sends_is_resumed_and_mailed(api, smtp_server):
    campaign = campaign_with_steps()
    lead = LeadFactory(campaign=campaign, email="flaky@x.example", score=0.5, next_action_at=timezone.now())
    smtp_server.refuse["flaky@x.example"] = "450 4.2.0 mailbox busy"
    for hours in (0, 1, 3):  # retried an hour later, then two, then stopped
        Lead.objects.filter(pk=lead.pk).update(next_action_at=timezone.now() - timedelta(minutes=1))
        live_cycle(api, campaign)
    lead.refresh_from_db()
    assert lead.next_action_at is None and lead.stopped_reason.startswith("3 failed sends")
    del smtp_server.refuse["flaky@x.example"]

    assert resume(api, lead).status_code == 200
    assert live_cycle(api, campaign)["outreach_sent"] == 1
    assert smtp_server.recipients() == ["flaky@x.example"]


def test_resuming_never_sends_the_next_step_sooner_than_its_delay(api, smtp_server):
    campaign = campaign_with_steps()
    lead = LeadFactory(campaign=campaign, next_action_at=timezone.now())
    assert live_cycle(api, campaign)["outreach_sent"] == 1
    api.patch(f"/api/cam/leads/{lead.pk}", {"tags": [TAG_DO_NOT_CONTACT]}, format="json")
    api.patch(f"/api/cam/leads/{lead.pk}", {"tags": []}, format="json")

    body = resume(api, lead).json()

    lead.refresh_from_db()
    assert body["next_action_at"] is not None
    assert lead.next_action_at == lead.last_contacted_at + followup_delay(3, lead.score)
    assert live_cycle(api, campaign)["outreach_sent"] == 0
    assert len(smtp_server.messages) == 1


def test_a_lead_with_an_unresolved_send_cannot_be_resumed(api, smtp_server):
    campaign = campaign_with_steps()
    lead, attempt = unknown_send(api, smtp_server, campaign)
    refused = resume(api, lead)
    assert refused.status_code == 409 and "step 1's send is unknown" in refused.json()["detail"]


# --- a lead's history ------------------------------------------------------------------------------


def test_a_leads_history_records_enrichment_sends_and_staff_outcomes_with_who_did_them(api, smtp_server, tmp_path):
    campaign = campaign_with_steps()
    csv = tmp_path / "leads.csv"
    csv.write_text("email,first_name,company,job_title\nmaya@brightloop.example,Maya,BrightLoop,CTO\n")
    call_command("import_leads", "--campaign-id", str(campaign.pk), str(csv), stdout=open(os.devnull, "w"))
    lead = Lead.objects.get(campaign=campaign)

    live_cycle(api, campaign)
    api.patch(f"/api/cam/leads/{lead.pk}", {"status": "REPLIED"}, format="json")
    events = api.get(f"/api/cam/leads/{lead.pk}/events").json()["results"]

    assert [(e["kind"], e["from_status"], e["to_status"]) for e in events] == [
        ("enriched", "NEW", "ENRICHED"), ("sent", "ENRICHED", "CONTACTED"), ("replied", "CONTACTED", "REPLIED"),
    ]
    assert events[0]["actor"].startswith(f"cycle of campaign #{campaign.pk}") and events[0]["user"] is None
    assert events[1]["reason"].startswith("step 1: ")
    assert events[2]["actor"].startswith("staff ") and events[2]["user"]


def test_a_suppression_stops_every_lead_of_the_address_each_with_an_event(api):
    leads = [LeadFactory(email="same@x.example", campaign=CampaignFactory()) for _ in range(2)]
    api.post("/api/cam/suppressions", {"email": "same@x.example"}, format="json")
    for lead in leads:
        event = LeadEvent.objects.get(lead=lead)
        assert (event.kind, event.reason) == (LeadEvent.Kind.STOPPED, "address is on the suppression list (manual)")


# --- the command and the campaign -------------------------------------------------------------------


def test_run_cam_cycle_exits_non_zero_when_the_mail_server_stopped_outreach(settings, capsys):
    campaign = campaign_with_steps()
    LeadFactory(campaign=campaign, next_action_at=timezone.now())
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9  # nothing listens there

    with pytest.raises(SystemExit) as stopped:
        call_command("run_cam_cycle", "--campaign-id", str(campaign.pk), "--no-dry-run")

    assert stopped.value.code == 3
    out, err = capsys.readouterr()
    assert "LIVE run: no email sent" in out and "mail server unavailable" in err


def test_run_cam_cycle_prints_no_terminal_escapes_from_names_or_notes(capsys):
    campaign = campaign_with_steps()
    Campaign.objects.filter(pk=campaign.pk).update(name="Evil\x1b]0;pwned\x07\x1b[2J")
    lead = LeadFactory(campaign=campaign, next_action_at=timezone.now())
    Lead.objects.filter(pk=lead.pk).update(company="\x1b[31mRed\x1b[0m Corp")

    call_command("run_cam_cycle", "--campaign-id", str(campaign.pk))

    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "Evil?]0;pwned?" in out and "?[31mRed?[0m Corp" in out


def test_resuming_a_campaign_whose_goal_is_met_says_to_raise_the_target(api):
    campaign = CampaignFactory(active=False, pause_reason="goal met", target_clients=1)
    LeadFactory(campaign=campaign, status=Lead.Status.QUALIFIED)

    response = api.put(f"/api/cam/campaigns/{campaign.pk}/resume")

    assert response.status_code == 409 and "raise the target" in response.json()["detail"]
    campaign.refresh_from_db()
    assert not campaign.active


def test_suppressed_addresses_are_never_resumed_through_a_resolution(api, smtp_server):
    campaign = campaign_with_steps()
    lead, attempt = unknown_send(api, smtp_server, campaign)
    Suppression.objects.create(email=lead.email)
    api.post(f"/api/cam/attempts/{attempt.pk}/resolve", {"outcome": "not_sent"}, format="json")
    lead.refresh_from_db()
    assert lead.next_action_at is None
