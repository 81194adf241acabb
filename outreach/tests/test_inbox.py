"""Reading what comes back (SPEC §9) from a real IMAP server: Dovecot, started by the suite, with
messages put there by IMAP APPEND as mail servers and clients write them. The emails they answer
were really sent (aiosmtpd) by a campaign's mailbox, and the inbox is read by `poll_inbox`, the
command the scheduler's task runs. Each test asserts the lead's status, the suppression list and
what the campaign sends next."""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.models import Lead, LeadEvent
from leads.tests.factories import LeadFactory
from outreach.models import InboundMessage, InboxState, Mailbox, OutreachAttempt, Suppression
from outreach.sending import outreach_send_due
from outreach.tests.factories import MailboxFactory

pytestmark = pytest.mark.django_db
MAIL = Path(__file__).parent / "mail"
Status = Lead.Status


def sample(name: str, **replace: str) -> bytes:
    """A sample message with its placeholders (the original's Message-ID, the sender) replaced."""
    raw = (MAIL / name).read_bytes()
    for old, new in replace.items():
        raw = raw.replace(old.encode(), new.encode())
    return raw


def message(*, sender: str, subject: str = "Re: Idea", body: str = "Thanks!", in_reply_to: str = "",
            message_id: str = "", headers: str = "") -> bytes:
    lines = [f"From: {sender}", "To: alex@agency.example", f"Subject: {subject}",
             "Date: Tue, 10 Mar 2026 12:00:00 +0000",
             f"Message-ID: {message_id or f'<{time.monotonic_ns()}@client.example>'}"]
    if in_reply_to:
        lines += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    lines += [h for h in headers.split("\n") if h] + ["Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode()


def imap_mailbox(smtp, imap, **fields) -> Mailbox:
    login = {"imap_username": imap.user, "imap_password": imap.password} | fields
    return MailboxFactory(smtp_port=smtp.port, from_email="alex@agency.example", imap_host=imap.host,
                          imap_port=imap.port, imap_security=Mailbox.Security.NONE, **login)


def sent_campaign(mailbox, *emails, **fields):
    """A campaign of three steps two days apart whose first email went to each address: the
    leads are CONTACTED, their next email due in about two days."""
    campaign = CampaignFactory(max_emails_per_day=50, target_clients=100, qualification_threshold=1.0, **fields)
    for position in (1, 2, 3):
        MessageStepFactory(campaign=campaign, position=position, delay_days=2)
    mailbox.campaigns.add(campaign)
    now = timezone.now()
    leads = [LeadFactory(campaign=campaign, email=email, score=0.5, next_action_at=now) for email in emails]
    assert outreach_send_due(campaign=campaign, now=now, dry_run=False).sent == len(emails)
    return campaign, [Lead.objects.get(pk=lead.pk) for lead in leads]


def first_id(lead) -> str:
    return lead.attempts.get(step=1).message_id


def poll(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("poll_inbox", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def sent_to_after(smtp, campaign, days: float) -> list[str]:
    """Who gets an email when the campaign sends `days` from now."""
    smtp.messages.clear()
    result = outreach_send_due(campaign=campaign, now=timezone.now() + timedelta(days=days), dry_run=False)
    assert not result.errors, result.errors
    return sorted(m["To"] for m in smtp.messages)


@pytest.fixture
def setup(smtp_servers, imap_server):
    smtp = smtp_servers()
    return smtp, imap_server, imap_mailbox(smtp, imap_server)


def test_a_gmail_reply_makes_its_lead_replied_within_one_poll_and_no_follow_up_goes_to_it(setup):
    smtp, imap, mailbox = setup
    campaign, (jane, other) = sent_campaign(mailbox, "jane@acme.example", "ann@other.example")
    # The same person in a second campaign, mid-sequence: her reply stops that one too.
    elsewhere = LeadFactory(email="jane@acme.example", status=Status.CONTACTED, attempt_count=1,
                            first_contacted_at=timezone.now(), next_action_at=timezone.now() + timedelta(days=1))
    imap.append(sample("gmail_reply.eml", **{"<177313.1@agency.example>": first_id(jane)}))

    out, err = poll()

    assert "1 new (1 reply), 1 matched to a lead" in out and not err
    jane.refresh_from_db()
    assert (jane.status, jane.next_action_at, jane.stopped_reason) == (Status.REPLIED, None, "replied")
    stored = InboundMessage.objects.get()
    assert (stored.kind, stored.lead, stored.matched_by, stored.attempt.step) == ("reply", jane, "message_id", 1)
    assert stored.text == "Hi Alex,\n\nSounds interesting, can we talk on Thursday?\n\nJane"
    assert stored.action.startswith(f"lead #{jane.pk} REPLIED; 1 other sequence(s)")
    elsewhere.refresh_from_db()
    assert elsewhere.next_action_at is None and "replied in campaign" in elsewhere.stopped_reason
    assert jane.events.filter(kind=LeadEvent.Kind.REPLIED, actor="inbox reader").count() == 1

    smtp.messages.clear()
    outreach_send_due(campaign=campaign, now=timezone.now() + timedelta(days=3), dry_run=False)
    assert [m["To"] for m in smtp.messages] == ["ann@other.example"]  # the follow-up to Ann only
    assert all("\\Seen" not in flags for flags in imap.flags())  # nothing was marked read
    assert poll()[0].startswith(f"{mailbox}: 0 new")  # the next read finds nothing new


def test_an_outlook_reply_in_german_from_another_address_of_the_company_stops_the_thread_it_answers(setup):
    smtp, imap, mailbox = setup
    campaign, (hans, colleague) = sent_campaign(mailbox, "hans@firma.example", "eva@firma.example",
                                                stop_company_on_reply=True)
    other_campaign = CampaignFactory()
    elsewhere = LeadFactory(campaign=other_campaign, email="jo@firma.example", status=Status.CONTACTED,
                            next_action_at=timezone.now() + timedelta(days=1))
    # Hans's assistant answers in the thread of the email to Hans.
    imap.append(sample("outlook_reply_de.eml", **{"<177313.2@agency.example>": first_id(hans),
                                                  "hans.mueller@firma.example": "assistenz@firma.example"}))
    poll()

    hans.refresh_from_db()
    colleague.refresh_from_db()
    stored = InboundMessage.objects.get()
    assert (stored.lead, stored.from_email, stored.subject) == (hans, "assistenz@firma.example", "AW: Idee für Firma")
    assert hans.status == Status.REPLIED
    # The campaign says a reply stops the whole company: Eva is not emailed again; the campaign
    # that does not say so goes on with Jo.
    assert colleague.next_action_at is None and colleague.stopped_reason.startswith("someone at firma.example replied")
    elsewhere.refresh_from_db()
    assert elsewhere.next_action_at is not None
    assert sent_to_after(smtp, campaign, 3) == []


def test_an_out_of_office_reply_delays_the_follow_up_by_the_ooo_delay_and_changes_no_status(setup, settings):
    settings.CAM_OOO_DELAY_DAYS = 7
    smtp, imap, mailbox = setup
    campaign, (jane, claire) = sent_campaign(mailbox, "jane@acme.example", "claire@societe.example")
    imap.append(sample("ooo_auto_submitted.eml", **{"<177313.1@agency.example>": first_id(jane)}))
    imap.append(sample("ooo_subject_only_fr.eml"))  # no In-Reply-To: matched by its sender
    before = timezone.now()

    out, _ = poll()

    assert "2 new (2 auto-reply), 2 matched to a lead" in out
    for lead in (jane, claire):
        lead.refresh_from_db()
        assert lead.status == Status.CONTACTED
        assert before + timedelta(days=7) <= lead.next_action_at <= timezone.now() + timedelta(days=7)
        assert lead.events.filter(kind=LeadEvent.Kind.POSTPONED, reason__startswith="out-of-office reply").exists()
    assert InboundMessage.objects.get(from_email="claire@societe.example").matched_by == "sender"
    smtp.messages.clear()
    outreach_send_due(campaign=campaign, now=timezone.now() + timedelta(days=3), dry_run=False)
    assert smtp.messages == []  # the follow-up due in two days waits
    outreach_send_due(campaign=campaign, now=timezone.now() + timedelta(days=7, hours=1), dry_run=False)
    assert sorted(m["To"] for m in smtp.messages) == ["claire@societe.example", "jane@acme.example"]


@pytest.mark.parametrize("name, original, recipient", [
    ("postfix_hard_bounce.eml", "<177313.9@agency.example>", "nobody@acme.example"),
    ("exchange_hard_bounce.eml", "<177313.11@agency.example>", "gone@firma.example"),
    ("qmail_bounce.eml", "<177313.5@agency.example>", "nope@example.net"),
])
def test_a_hard_bounce_suppresses_the_address_loses_the_lead_and_counts_for_bounce_protection(
    setup, name, original, recipient
):
    smtp, imap, mailbox = setup
    campaign, (nobody, ann) = sent_campaign(mailbox, recipient, "ann@other.example")
    imap.append(sample(name, **{original: first_id(nobody)}))

    poll()

    nobody.refresh_from_db()
    attempt = nobody.attempts.get(step=1)
    assert (nobody.status, nobody.next_action_at) == (Status.LOST, None)
    assert Suppression.objects.get(email=recipient).reason == Suppression.Reason.BOUNCED
    assert attempt.bounced_at is not None
    stored = InboundMessage.objects.get()
    assert (stored.kind, stored.bounce_hard, stored.matched_by, stored.attempt) == ("bounce", True, "message_id", attempt)
    smtp.messages.clear()
    outreach_send_due(campaign=campaign, now=timezone.now() + timedelta(days=3), dry_run=False)
    assert [m["To"] for m in smtp.messages] == ["ann@other.example"]


def test_hard_bounces_past_the_protection_rate_pause_the_campaign_when_they_are_read(setup, settings):
    settings.CAM_BOUNCE_WINDOW, settings.CAM_BOUNCE_PAUSE_RATE = 4, 0.25
    smtp, imap, mailbox = setup
    campaign, leads = sent_campaign(mailbox, *(f"p{i}@acme.example" for i in range(4)))
    for lead in leads[:2]:
        imap.append(sample("postfix_hard_bounce.eml", **{"<177313.9@agency.example>": first_id(lead),
                                                         "nobody@acme.example": lead.email}))
    poll()
    campaign.refresh_from_db()
    assert not campaign.active and campaign.pause_reason.startswith("bounce protection: 2 of the last 4 sends")


@pytest.mark.parametrize("name, original, recipient, status", [
    ("exchange_soft_bounce.eml", "<177313.7@agency.example>", "slow@acme.example", "4.4.7"),
    ("postfix_delayed.eml", "<177313.12@agency.example>", "busy@acme.example", "4.4.1"),
])
def test_a_soft_bounce_is_noted_and_the_sequence_goes_on(setup, name, original, recipient, status):
    smtp, imap, mailbox = setup
    campaign, (slow,) = sent_campaign(mailbox, recipient)
    imap.append(sample(name, **{original: first_id(slow)}))
    due = slow.next_action_at

    poll()

    slow.refresh_from_db()
    assert (slow.status, slow.next_action_at) == (Status.CONTACTED, due)
    assert not Suppression.objects.exists()
    assert slow.events.filter(kind=LeadEvent.Kind.BOUNCED, reason__startswith=f"soft bounce ({status})").exists()
    assert InboundMessage.objects.get().bounce_hard is False
    smtp.messages.clear()
    outreach_send_due(campaign=campaign, now=timezone.now() + timedelta(days=3), dry_run=False)
    assert [m["To"] for m in smtp.messages] == [recipient]


def test_an_unsubscribe_request_in_a_reply_suppresses_the_address_and_nothing_more_is_sent(setup):
    smtp, imap, mailbox = setup
    campaign, (bob,) = sent_campaign(mailbox, "bob@acme.example")
    imap.append(sample("unsubscribe_reply.eml", **{"<177313.3@agency.example>": first_id(bob)}))

    poll()

    assert Suppression.objects.get(email="bob@acme.example").reason == Suppression.Reason.UNSUBSCRIBED
    bob.refresh_from_db()
    assert bob.next_action_at is None and InboundMessage.objects.get().kind == "unsubscribe"
    assert sent_to_after(smtp, campaign, 3) == []


def test_a_message_matching_nothing_is_kept_unmatched_and_changes_nothing(setup):
    smtp, imap, mailbox = setup
    campaign, (jane,) = sent_campaign(mailbox, "jane@acme.example")
    LeadFactory(email="never.emailed@acme.example", status=Status.ENRICHED, next_action_at=timezone.now())
    imap.append(message(sender="Newsletter <news@vendor.example>", subject="Our spring offers"))
    imap.append(message(sender="never.emailed@acme.example", subject="Hello"))  # CAM never wrote to them

    out, _ = poll()

    assert "2 new (2 reply), 0 matched to a lead" in out
    assert set(InboundMessage.objects.values_list("lead", "matched_by")) == {(None, "")}
    assert not Suppression.objects.exists()
    assert Lead.objects.filter(status=Status.REPLIED).count() == 0


def test_a_copy_of_cams_own_follow_up_in_the_inbox_is_not_taken_for_a_reply(setup):
    smtp, imap, mailbox = setup
    campaign, (jane,) = sent_campaign(mailbox, "jane@acme.example")
    # A server filing sent mail in the inbox (or a Bcc to itself): In-Reply-To names Jane's thread.
    imap.append(message(sender="Alex <alex@agency.example>", subject="Re: Idea", in_reply_to=first_id(jane)))
    poll()
    jane.refresh_from_db()
    assert jane.status == Status.CONTACTED and jane.next_action_at is not None
    assert InboundMessage.objects.get().action == "sent from one of CAM's own addresses: nothing done"


def test_hostile_messages_are_kept_and_do_not_stop_the_reading_of_the_next_ones(setup):
    smtp, imap, mailbox = setup
    campaign, (jane, ann) = sent_campaign(mailbox, "jane@acme.example", "ann@other.example")
    nasty = (b"From: \"Eve\x00\" <jane@acme.example>\r\nSubject: Re: \xff\xfe caf\xe9 \x00\r\n"
             b"In-Reply-To: " + first_id(jane).encode() + b"\r\nReferences: " + b"<x@y> " * 5000 + b"\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\n\r\nYes\x00 please \xc3\x28 call me\r\n")
    imap.append(nasty)
    imap.append(b"\x00\x01\x02 not a message at all \xff")
    imap.append(message(sender="ann@other.example", in_reply_to=first_id(ann)))

    out, err = poll()

    assert "3 new" in out and not err
    jane.refresh_from_db()
    ann.refresh_from_db()
    assert (jane.status, ann.status) == (Status.REPLIED, Status.REPLIED)
    stored = InboundMessage.objects.get(lead=jane)
    assert "\x00" not in stored.text + stored.subject + stored.from_name
    assert stored.text.startswith("Yes") and "call me" in stored.text and stored.subject.startswith("Re:")
    assert InboundMessage.objects.count() == 3 and InboxState.objects.get().last_uid == 3


def test_a_message_cam_fails_to_act_on_is_kept_with_the_error_and_the_next_ones_are_read(setup, monkeypatch):
    smtp, imap, mailbox = setup
    campaign, (jane, ann) = sent_campaign(mailbox, "jane@acme.example", "ann@other.example")
    from outreach import replies

    acting = replies._reply

    def failing_for_jane(message, *args):  # a bug met by one message only (fault injection)
        if message.from_email == "jane@acme.example":
            raise RuntimeError("boom")
        return acting(message, *args)

    monkeypatch.setattr(replies, "_reply", failing_for_jane)
    imap.append(message(sender="jane@acme.example", in_reply_to=first_id(jane)))
    imap.append(message(sender="ann@other.example", in_reply_to=first_id(ann)))

    out, err = poll()

    kept = InboundMessage.objects.get(from_email="jane@acme.example")
    assert (kept.lead, kept.action, kept.evidence["error"]) == (None, "not acted on: see the error",
                                                                "could not be acted on: RuntimeError: boom")
    jane.refresh_from_db()
    ann.refresh_from_db()
    assert (jane.status, ann.status) == (Status.CONTACTED, Status.REPLIED)  # Jane's change rolled back whole
    assert InboxState.objects.get().last_uid == 2


def test_old_mail_from_before_the_mailbox_came_to_cam_is_not_read(setup):
    smtp, imap, mailbox = setup
    campaign, (jane,) = sent_campaign(mailbox, "jane@acme.example")
    imap.append(message(sender="jane@acme.example", subject="Re: last year's project"),
                when=time.time() - 400 * 86400)
    out, _ = poll()
    assert out.startswith(f"{mailbox}: 0 new")
    jane.refresh_from_db()
    assert jane.status == Status.CONTACTED


def test_a_folder_renumbered_by_the_server_is_read_again_without_applying_anything_twice(smtp_servers, imap_server):
    smtp = smtp_servers()
    imap_server.create_folder("Replies")
    mailbox = imap_mailbox(smtp, imap_server, imap_inbox="Replies")
    campaign, (jane, ann) = sent_campaign(mailbox, "jane@acme.example", "ann@other.example")
    reply = message(sender="jane@acme.example", in_reply_to=first_id(jane), message_id="<r1@acme.example>")
    imap_server.append(reply, "Replies")
    poll()
    first_validity = InboxState.objects.get(mailbox=mailbox).uidvalidity

    # The server loses its index: the folder is recreated, the same message in it, and a new one.
    imap_server.delete_folder("Replies")
    imap_server.create_folder("Replies")
    imap_server.append(reply, "Replies")
    imap_server.append(message(sender="ann@other.example", in_reply_to=first_id(ann)), "Replies")
    out, _ = poll()

    state = InboxState.objects.get(mailbox=mailbox)
    assert state.uidvalidity != first_validity and state.last_uid == 2
    assert "2 new (1 reply), 1 matched to a lead, 1 already read" in out
    assert InboundMessage.objects.count() == 2
    assert LeadEvent.objects.filter(kind=LeadEvent.Kind.REPLIED).count() == 2  # Jane once, Ann once


def test_a_wrong_imap_password_is_the_mailboxs_last_error_and_the_other_mailboxes_are_read(smtp_servers, imap_server):
    smtp = smtp_servers()
    wrong = imap_mailbox(smtp, imap_server, name="Wrong", imap_password="not-it")
    right = imap_mailbox(smtp, imap_server, name="Right")
    campaign, (jane,) = sent_campaign(right, "jane@acme.example")
    imap_server.append(message(sender="jane@acme.example", in_reply_to=first_id(jane)))

    with pytest.raises(SystemExit) as exit_:
        poll()

    assert exit_.value.code == 1
    wrong.refresh_from_db()
    assert wrong.last_error.startswith("IMAP: authentication failed") and wrong.active  # sending may still work
    jane.refresh_from_db()
    assert jane.status == Status.REPLIED
    out, _ = poll("--mailbox", str(right.pk))
    assert out.startswith("Right <alex@agency.example>: 0 new")


def test_an_interrupted_send_found_in_the_sent_folder_becomes_sent_and_one_not_found_is_left_for_staff(setup):
    smtp, imap, mailbox = setup
    campaign, (jane, ann) = sent_campaign(mailbox, "jane@acme.example", "ann@other.example")
    long_ago = timezone.now() - timedelta(hours=1)
    interrupted = []
    for lead, status in ((jane, OutreachAttempt.Status.CLAIMED), (ann, OutreachAttempt.Status.UNKNOWN)):
        # Their second email was being sent when the process died (claimed) or the line broke (unknown).
        attempt = OutreachAttempt.objects.create(
            campaign=campaign, lead=lead, mailbox=mailbox, step=2, status=status, created_at=long_ago,
            message_id=f"<step2-{lead.pk}@agency.example>", subject="Re: Idea")
        Lead.objects.filter(pk=lead.pk).update(next_action_at=None, stopped_reason=f"sending step 2: {status}")
        interrupted.append(attempt)
    imap.append(message(sender="alex@agency.example", message_id=interrupted[0].message_id), "Sent")

    out, _ = poll()

    assert "Sent folder: 1 interrupted send(s) found, 1 not" in out
    found, missing = (OutreachAttempt.objects.get(pk=a.pk) for a in interrupted)
    assert (found.status, found.resolution) == (OutreachAttempt.Status.SENT, "sent")
    jane.refresh_from_db()
    assert jane.attempt_count == 2 and jane.next_action_at is not None  # moved on to step 3
    assert missing.status == OutreachAttempt.Status.UNKNOWN and "not found in the Sent folder" in missing.error
    poll()
    missing.refresh_from_db()
    assert missing.error.count("not found in the Sent folder") == 1


@pytest.mark.django_db(transaction=True)
def test_four_pollers_at_once_apply_every_message_exactly_once(setup, database_url):
    smtp, imap, mailbox = setup
    emails = [f"p{i}@lead{i}.example" for i in range(12)]
    campaign, leads = sent_campaign(mailbox, *emails)
    for lead in leads:
        imap.append(message(sender=lead.email, in_reply_to=first_id(lead)))
    env = {**os.environ, "DATABASE_URL": database_url, "CAM_LOG_LEVEL": "ERROR"}
    processes = [subprocess.Popen([sys.executable, "manage.py", "poll_inbox", "--json"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, outputs
    results = [json.loads(out)[0] for out, _ in outputs]
    assert sum(r["stored"] for r in results) == 12  # each message stored by exactly one reader
    assert all(r["stored"] + r["already"] == r["read"] for r in results)

    assert InboundMessage.objects.count() == 12
    assert Lead.objects.filter(pk__in=[lead.pk for lead in leads], status=Status.REPLIED).count() == 12
    assert LeadEvent.objects.filter(kind=LeadEvent.Kind.REPLIED).count() == 12
    assert InboxState.objects.get(mailbox=mailbox).last_uid == 12
