"""What a failed send means (SPEC §6), against misbehaving mail servers.

A send that certainly did not leave releases its claim (no attempt, no quota, the lead stays
due); a message that cannot be built is FAILED with its reason; only a connection lost after the
message was handed over is UNKNOWN, and it stops the campaign's outreach for the cycle. No server
can hold a send or a cycle past its limits. The servers are real sockets: aiosmtpd with its
handlers changed, or a small scripted server for replies trickled a byte at a time.
"""

import asyncio
import socket
import socketserver
import threading
import time
from datetime import timedelta

import pytest

from campaigns.cycle import cycle_run
from campaigns.models import Campaign
from campaigns.tests.factories import CampaignFactory
from conftest import free_port
from leads.models import Lead
from leads.tests.factories import LeadFactory
from outreach.limits import quota_used
from outreach.models import OutreachAttempt
from outreach.sending import outreach_send_due

pytestmark = pytest.mark.django_db
Sent = OutreachAttempt.Status


def due_leads(campaign, count, now):
    return [LeadFactory(campaign=campaign, next_action_at=now - timedelta(minutes=1), score=0.5 - i / 100)
            for i in range(count)]


def test_a_server_closing_the_connection_between_messages_gets_every_message_and_nothing_is_unknown(
    smtp_server, now
):
    campaign = CampaignFactory()
    leads = due_leads(campaign, 3, now)
    accept = smtp_server.handle_DATA

    async def accept_then_hang_up(server, session, envelope):
        reply = await accept(server, session, envelope)
        asyncio.get_running_loop().call_later(0.05, server.transport.close)  # idle, after the reply
        return reply

    smtp_server.handle_DATA = accept_then_hang_up
    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert (result.sent, result.failed, result.unknown, result.errors) == (3, 0, 0, [])
    assert sorted(smtp_server.recipients()) == sorted(lead.email for lead in leads)
    assert set(OutreachAttempt.objects.values_list("status", flat=True)) == {Sent.SENT}


def test_a_server_hanging_up_just_after_answering_noop_still_gets_every_message_once(smtp_server, now):
    """The race the test above leaves to timing, forced: the idle check passes, then the
    server closes before MAIL FROM. Nothing was handed over, so a new connection takes it."""
    campaign = CampaignFactory()
    leads = due_leads(campaign, 3, now)

    async def answer_then_hang_up(server, session, envelope, arg):
        asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 OK"

    smtp_server.handle_NOOP = answer_then_hang_up
    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert (result.sent, result.failed, result.unknown, result.released, result.errors) == (3, 0, 0, 0, [])
    assert sorted(smtp_server.recipients()) == sorted(lead.email for lead in leads)


def test_a_connection_lost_before_data_releases_the_claim_and_the_lead_stays_due(smtp_server, now):
    campaign = CampaignFactory()
    leads = due_leads(campaign, 3, now)

    async def hang_up_at_rcpt(server, session, envelope, address, rcpt_options):
        server.transport.close()
        return "250 OK"

    smtp_server.handle_RCPT = hang_up_at_rcpt
    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert (result.sent, result.failed, result.unknown, result.released) == (0, 0, 0, 2)
    assert result.stopped and "dropped the connection before 2 messages" in result.errors[0]
    assert not OutreachAttempt.objects.exists()
    assert quota_used(campaign=campaign, now=now) == 0
    for lead in leads:
        lead.refresh_from_db()
        assert (lead.next_action_at, lead.stopped_reason, lead.attempt_count) == (now - timedelta(minutes=1), "", 0)

    del smtp_server.handle_RCPT  # the server is fine again: the next cycle sends to all three
    later = outreach_send_due(campaign=campaign, now=now + timedelta(minutes=15), dry_run=False)
    assert later.sent == 3 and len(set(smtp_server.recipients())) == 3


def test_a_line_break_in_the_sender_name_stops_outreach_before_any_claim(smtp_server, now):
    """The API refuses it now; a campaign saved before that still must not stop its leads."""
    campaign = CampaignFactory()
    Campaign.objects.filter(pk=campaign.pk).update(sender_name="Alex\r\nBcc: all@victims.example")
    campaign.refresh_from_db()
    leads = due_leads(campaign, 2, now)

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert result.stopped and "the campaign's sender cannot be used" in result.errors[0]
    assert (result.sent, result.failed, result.unknown) == (0, 0, 0)
    assert smtp_server.messages == [] and not OutreachAttempt.objects.exists()
    for lead in leads:
        lead.refresh_from_db()
        assert lead.next_action_at is not None and lead.stopped_reason == ""


def test_a_message_that_cannot_be_built_is_failed_with_its_reason_and_uses_no_quota(smtp_server, now):
    campaign = CampaignFactory(max_emails_per_day=2)
    broken = LeadFactory(campaign=campaign, email="müller@firma.example", next_action_at=now, score=0.9)
    fine = due_leads(campaign, 2, now)

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    attempt = OutreachAttempt.objects.get(lead=broken)
    assert attempt.status == Sent.FAILED and "SMTPUTF8" in attempt.error
    broken.refresh_from_db()
    assert broken.next_action_at is None and "not sent" in broken.stopped_reason
    # The failure used no quota: both other leads were still mailed within the quota of 2.
    assert (result.sent, result.failed) == (2, 1)
    assert sorted(smtp_server.recipients()) == sorted(lead.email for lead in fine)


def answer_data_after(smtp_server, seconds: float) -> None:
    """The server takes each message, then waits `seconds` before accepting it."""
    accept = smtp_server.handle_DATA

    async def slow(server, session, envelope):
        await asyncio.sleep(seconds)
        return await accept(server, session, envelope)

    smtp_server.handle_DATA = slow


def test_a_slow_server_cannot_hold_the_cycle_past_its_budget(smtp_server, now):
    campaign = CampaignFactory(max_emails_per_day=50)
    due_leads(campaign, 20, now)
    answer_data_after(smtp_server, 0.4)
    started = time.monotonic()
    result = cycle_run(campaign=campaign, now=now, dry_run=False, budget_seconds=1.5)
    elapsed = time.monotonic() - started

    assert elapsed < 4, elapsed
    assert 1 <= result.outreach_sent < 20
    assert any("cycle budget of 1.5 s used up" in note or "budget" in note for note in result.notes), result.notes
    waiting = Lead.objects.filter(campaign=campaign, attempt_count=0, next_action_at__isnull=False).count()
    assert waiting == 20 - result.outreach_sent  # what the cycle did not reach waits, untouched


def test_a_send_started_before_the_budget_ends_gets_its_whole_time_limit(smtp_server, now):
    """A healthy but slow server is not cut off by the cycle's own budget: the budget stops new
    sends, never one under way (that would make its outcome unknown)."""
    campaign = CampaignFactory(max_emails_per_day=50)
    due_leads(campaign, 3, now)
    answer_data_after(smtp_server, 1.3)
    result = cycle_run(campaign=campaign, now=now, dry_run=False, budget_seconds=1.0)

    assert (result.outreach_sent, result.outreach_unknown, result.stopped_phases) == (1, 0, [])
    assert OutreachAttempt.objects.get().status == OutreachAttempt.Status.SENT


def test_each_claim_is_dated_when_it_is_made_not_when_the_cycle_started(smtp_server, now):
    """Past midnight, a claim dated at the cycle's start would count on the previous day's quota."""
    campaign = CampaignFactory(max_emails_per_day=50)
    due_leads(campaign, 2, now)
    answer_data_after(smtp_server, 1.2)
    cycle_run(campaign=campaign, now=now, dry_run=False)

    first, second = OutreachAttempt.objects.order_by("created_at", "id")
    assert first.created_at == now and second.created_at >= now + timedelta(seconds=1)


class _TricklingSMTP(socketserver.BaseRequestHandler):
    """A scripted SMTP server: `trickle` names the reply sent one byte at a time (greeting,
    mail or final) — slow enough that no single read times out, endless in total."""

    trickle = ""
    delay = 0.2

    def _say(self, line: str, slowly: bool = False):
        data = (line + "\r\n").encode()
        if not slowly:
            self.request.sendall(data)
            return
        for byte in data * 200:  # far longer than any limit
            self.request.sendall(bytes([byte]))
            time.sleep(self.delay)

    def handle(self):
        try:
            self._say("220 trickle.example ESMTP", slowly=self.trickle == "greeting")
            stream = self.request.makefile("rb")
            in_data = False
            for raw in stream:
                line = raw.decode(errors="replace").strip()
                if in_data:
                    if line == ".":
                        in_data = False
                        self._say("250 queued", slowly=self.trickle == "final")
                    continue
                verb = line.split(" ")[0].upper()
                if verb in ("EHLO", "HELO"):
                    self._say("250 trickle.example")
                elif verb == "MAIL":
                    self._say("250 ok", slowly=self.trickle == "mail")
                elif verb == "DATA":
                    in_data = True
                    self._say("354 go on")
                elif verb == "QUIT":
                    self._say("221 bye")
                    return
                else:
                    self._say("250 ok")
        except OSError:
            pass  # the client cut us off: that is what is being tested


@pytest.fixture
def trickling_server(settings):
    port = free_port()
    handler = type("Handler", (_TricklingSMTP,), {})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_TIMEOUT = 30  # per read: a trickle never trips it; the send limit must
    settings.CAM_SEND_TIMEOUT_SECONDS = 1
    yield handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("where", ["greeting", "mail"])
def test_a_server_trickling_its_replies_before_data_is_cut_off_and_nothing_is_claimed(trickling_server, now, where):
    trickling_server.trickle = where
    campaign = CampaignFactory()
    leads = due_leads(campaign, 3, now)

    started = time.monotonic()
    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)
    elapsed = time.monotonic() - started

    assert elapsed < 6, elapsed  # two sends of at most 1 s each, then the phase stops
    assert result.stopped and (result.sent, result.unknown) == (0, 0)
    assert not OutreachAttempt.objects.exists()
    for lead in leads:
        lead.refresh_from_db()
        assert lead.next_action_at is not None and lead.attempt_count == 0


def test_a_server_trickling_its_answer_after_the_message_leaves_the_send_unknown_and_stops(trickling_server, now):
    trickling_server.trickle = "final"
    campaign = CampaignFactory()
    first, second = due_leads(campaign, 2, now)

    started = time.monotonic()
    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert time.monotonic() - started < 4
    assert (result.sent, result.failed, result.unknown, result.stopped) == (0, 0, 1, True)
    attempt = OutreachAttempt.objects.get()
    assert attempt.lead_id == first.pk and attempt.status == Sent.UNKNOWN
    assert "no answer within the send limit of 1 s" in attempt.error
    second.refresh_from_db()
    assert second.next_action_at is not None  # the relay is suspect: nothing more this cycle


def test_a_hanging_server_that_accepts_and_never_answers_is_down_within_the_send_limit(settings, now):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)  # connections are accepted by the kernel; nobody ever speaks
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", listener.getsockname()[1]
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_TIMEOUT = 30
    settings.CAM_SEND_TIMEOUT_SECONDS = 1
    campaign = CampaignFactory()
    due_leads(campaign, 2, now)
    try:
        started = time.monotonic()
        result = outreach_send_due(campaign=campaign, now=now, dry_run=False)
        assert time.monotonic() - started < 3
    finally:
        listener.close()
    assert result.stopped and "mail server unavailable" in result.errors[0]
    assert not OutreachAttempt.objects.exists()
