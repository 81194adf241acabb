"""Sending through mailboxes (SPEC §8): each mailbox's cap with its warm-up, its gap, its send
window in the lead's time zone, follow-ups from the thread's mailbox, a mailbox whose login
fails, bounce protection, one conversation per person, and the footer and headers every email
carries. Real SMTP servers (aiosmtpd), one per mailbox."""

from collections import Counter
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from campaigns.models import Campaign
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.models import Lead, LeadEvent
from leads.services import lead_mark_replied
from leads.tests.factories import LeadFactory
from outreach.limits import mailbox_cap_today, mailbox_sent_today, window_next_open, window_open
from outreach.models import Mailbox, OutreachAttempt, Suppression
from outreach.sending import outreach_send_due
from outreach.tests.factories import MailboxFactory
from outreach.unsubscribe import unsubscribe_email

pytestmark = pytest.mark.django_db
SENT = OutreachAttempt.Status.SENT


def mailbox_on(server, **fields) -> Mailbox:
    return MailboxFactory(smtp_port=server.port, **fields)


def campaign_with(*mailboxes, quota=10, steps=2, **fields) -> Campaign:
    campaign = CampaignFactory(max_emails_per_day=quota, target_clients=100, **fields)
    for position in range(1, steps + 1):
        MessageStepFactory(campaign=campaign, position=position, delay_days=2,
                           subject_template="Idea for {{ company }}" if position == 1 else "Re: Idea for {{ company }}")
    for mailbox in mailboxes:
        mailbox.campaigns.add(campaign)
    return campaign


def due_leads(campaign, count, now, **fields):
    # Score 0.5: under the threshold, so nobody is QUALIFIED and follow-ups go on.
    return [LeadFactory(campaign=campaign, score=0.5, next_action_at=now, **fields) for _ in range(count)]


def body_and_footer(message) -> tuple[str, str]:
    text, footer = message.get_content().replace("\r\n", "\n").split("\n\n--\n")
    return text, footer


def test_two_mailboxes_with_caps_3_and_2_send_exactly_5_in_a_day_and_follow_ups_stay_on_their_mailbox(
    smtp_servers, now
):
    first_server, second_server = smtp_servers(), smtp_servers()
    big, small = mailbox_on(first_server, daily_cap=3), mailbox_on(second_server, daily_cap=2)
    campaign = campaign_with(big, small, quota=10)
    leads = due_leads(campaign, 10, now)

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)
    again = outreach_send_due(campaign=campaign, now=now + timedelta(hours=5), dry_run=False)

    assert (result.sent, again.sent) == (5, 0)
    assert (len(first_server.messages), len(second_server.messages)) == (3, 2)
    assert again.waiting == {"mailbox_cap": 5}
    assert "5 due lead(s) wait for their mailbox" in again.notes[-1]
    assert {m["From"] for m in first_server.messages} == {f"Alex <{big.from_email}>"}
    assert {m["From"] for m in second_server.messages} == {f"Alex <{small.from_email}>"}

    # Two days later the follow-ups are due: each goes from its thread's mailbox, in its thread,
    # whatever has the most room (the caps are new again).
    later = now + timedelta(days=3)
    follow_ups = outreach_send_due(campaign=campaign, now=later, dry_run=False)
    assert follow_ups.sent == 5
    for server in (first_server, second_server):
        firsts = {m["To"]: m for m in server.messages if not m["Subject"].startswith("Re:")}
        seconds = [m for m in server.messages if m["Subject"].startswith("Re:")]
        contacted_first = [to for to in firsts if Lead.objects.get(email=to).attempt_count == 2]
        assert sorted(m["To"] for m in seconds) == sorted(contacted_first)
        for message in seconds:
            assert message["In-Reply-To"] == firsts[message["To"]]["Message-ID"]
    attempts = OutreachAttempt.objects.filter(campaign=campaign, status=SENT)
    for lead in leads:
        assert len(set(attempts.filter(lead=lead).values_list("mailbox", flat=True))) <= 1


def test_every_email_carries_the_footer_and_both_unsubscribe_headers(smtp_servers, now):
    server = smtp_servers()
    mailbox = mailbox_on(server, from_name="Sam from Agency")
    campaign = campaign_with(mailbox, postal_address="Agency SAS\n12 rue de la Paix\n75002 Paris")
    lead = due_leads(campaign, 1, now)[0]

    outreach_send_due(campaign=campaign, now=now, dry_run=False)

    (message,) = server.messages
    text, footer = body_and_footer(message)
    assert text.startswith("Hi Jane")
    lines = footer.strip().splitlines()
    assert lines[0] == f"Sent by Sam from Agency <{mailbox.from_email}>"
    assert lines[1:4] == ["Agency SAS", "12 rue de la Paix", "75002 Paris"]
    link = lines[4].rsplit(" ", 1)[1]
    assert link.startswith("http://127.0.0.1:8000/u/") and unsubscribe_email(link.rsplit("/", 1)[1]) == lead.email
    https_link, mailto = [part.strip().strip("<>") for part in message["List-Unsubscribe"].split(",")]
    assert https_link == link and mailto == f"mailto:{mailbox.from_email}?subject=unsubscribe"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # What was sent is what the attempt keeps.
    assert OutreachAttempt.objects.get(lead=lead).body.endswith(footer)


def test_live_sending_without_a_postal_address_is_refused_and_sends_nothing(smtp_server, settings, now):
    settings.CAM_POSTAL_ADDRESS = ""
    campaign = campaign_with()
    due_leads(campaign, 2, now)

    dry = outreach_send_due(campaign=campaign, now=now, dry_run=True)
    live = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    assert dry.sent == 2  # a dry run shows what would go, footer and all
    assert live.sent == 0 and live.stopped and "no postal address" in live.errors[0]
    assert smtp_server.messages == [] and not OutreachAttempt.objects.exists()


def test_run_cam_cycle_refuses_live_sending_without_a_postal_address_with_a_non_zero_exit(
    smtp_server, settings, now, capsys
):
    settings.CAM_POSTAL_ADDRESS = ""
    campaign = campaign_with()
    due_leads(campaign, 1, now)

    with pytest.raises(SystemExit) as exit_:
        call_command("run_cam_cycle", "--campaign-id", str(campaign.pk), "--no-dry-run")

    assert exit_.value.code != 0
    assert "no postal address" in capsys.readouterr().out
    assert smtp_server.messages == []


def test_warm_up_ramps_the_cap_day_by_day_up_to_the_daily_cap(smtp_servers, now):
    server = smtp_servers()
    mailbox = mailbox_on(server, daily_cap=10, warmup_start=2, warmup_step=3, warmup_started_on=now.date())
    caps = [mailbox_cap_today(mailbox=mailbox, now=now + timedelta(days=day)) for day in range(5)]
    assert caps == [2, 5, 8, 10, 10]

    campaign = campaign_with(mailbox, quota=50, steps=1)
    due_leads(campaign, 12, now)
    sent_per_day = [outreach_send_due(campaign=campaign, now=now + timedelta(days=day), dry_run=False).sent
                    for day in range(3)]
    assert sent_per_day == [2, 5, 5]  # 12 leads: 2, then 5, then the last 5 (cap 8)


def test_the_gap_holds_between_two_sends_of_a_mailbox_with_its_jitter(smtp_servers, now):
    server = smtp_servers()
    mailbox = mailbox_on(server, min_gap_seconds=300, gap_jitter_seconds=60)
    campaign = campaign_with(mailbox)
    due_leads(campaign, 3, now)

    first = outreach_send_due(campaign=campaign, now=now, dry_run=False)
    mailbox.refresh_from_db()
    wait = (mailbox.next_send_at - now).total_seconds()
    assert first.sent == 1 and first.waiting == {"gap": 2}
    assert 300 <= wait <= 360
    assert outreach_send_due(campaign=campaign, now=mailbox.next_send_at - timedelta(seconds=1), dry_run=False).sent == 0
    assert outreach_send_due(campaign=campaign, now=mailbox.next_send_at, dry_run=False).sent == 1
    assert len(server.messages) == 2


def test_the_window_is_read_in_the_leads_time_zone_then_the_campaigns_then_the_mailboxes(smtp_servers):
    server = smtp_servers()
    # Monday to Friday, 09:00-17:00 wherever the lead is.
    mailbox = mailbox_on(server, window_days=[0, 1, 2, 3, 4], window_start=time(9), window_end=time(17),
                         timezone="Europe/Paris")
    campaign = campaign_with(mailbox, timezone="Asia/Tokyo")
    tuesday_13_utc = datetime(2026, 3, 10, 13, 0, tzinfo=dt_timezone.utc)  # New York 09:00 (EDT), Tokyo 22:00
    new_yorker = LeadFactory(campaign=campaign, score=0.5, next_action_at=tuesday_13_utc, timezone="America/New_York")
    tokyo = LeadFactory(campaign=campaign, score=0.5, next_action_at=tuesday_13_utc, timezone="")

    result = outreach_send_due(campaign=campaign, now=tuesday_13_utc - timedelta(minutes=1), dry_run=False)
    assert result.sent == 0  # New York 08:59, Tokyo 21:59: both outside
    result = outreach_send_due(campaign=campaign, now=tuesday_13_utc, dry_run=False)
    assert result.sent == 1 and [m["To"] for m in server.messages] == [new_yorker.email]
    assert result.waiting == {"window": 1}
    assert "(the first window opens 2026-03-11 00:00 UTC)" in result.notes[-1]  # 09:00 in Tokyo

    # The next morning in Tokyo (00:00 UTC is 09:00 in Tokyo) the campaign's zone lets the other go.
    result = outreach_send_due(campaign=campaign, now=datetime(2026, 3, 11, 0, 0, tzinfo=dt_timezone.utc), dry_run=False)
    assert result.sent == 1 and server.messages[-1]["To"] == tokyo.email

    # Neither the lead nor the campaign has a zone: the mailbox's. 16:00 UTC is 17:00 in Paris
    # (closed), 15:59 UTC is 16:59 (open).
    Campaign.objects.filter(pk=campaign.pk).update(timezone="")
    campaign.refresh_from_db()
    parisian = LeadFactory(campaign=campaign, score=0.5, next_action_at=tuesday_13_utc, timezone="")
    wednesday_16_utc = datetime(2026, 3, 11, 16, 0, tzinfo=dt_timezone.utc)
    assert outreach_send_due(campaign=campaign, now=wednesday_16_utc, dry_run=False).sent == 0
    assert outreach_send_due(campaign=campaign, now=wednesday_16_utc - timedelta(minutes=1), dry_run=False).sent == 1
    assert server.messages[-1]["To"] == parisian.email


@pytest.mark.parametrize(
    "local, open_",
    [
        ("2026-03-13 21:59", False),  # Friday, before the window
        ("2026-03-13 22:00", True),  # Friday night
        ("2026-03-13 23:59", True),
        ("2026-03-14 00:00", True),  # past midnight: still Friday's window
        ("2026-03-14 05:59", True),
        ("2026-03-14 06:00", False),  # the window's end
        ("2026-03-14 23:00", False),  # Saturday night: Saturday is not a window day
        ("2026-03-13 03:00", False),  # Friday early morning belongs to Thursday's window: not a day
    ],
)
def test_a_window_crossing_midnight_belongs_to_the_day_it_starts(local, open_):
    mailbox = Mailbox(window_days=[4], window_start=time(22), window_end=time(6))
    zone = ZoneInfo("Europe/Berlin")
    at = datetime.fromisoformat(local).replace(tzinfo=zone)
    assert window_open(mailbox=mailbox, at=at, zone=zone) is open_


def test_the_window_keeps_its_wall_clock_hours_across_a_dst_change():
    mailbox = Mailbox(window_days=list(range(7)), window_start=time(9), window_end=time(17))
    paris = ZoneInfo("Europe/Paris")
    # Saturday before the change 09:00 Paris = 08:00 UTC; Sunday after it 09:00 Paris = 07:00 UTC.
    before, after = datetime(2026, 3, 28, 8, 0, tzinfo=dt_timezone.utc), datetime(2026, 3, 29, 7, 0, tzinfo=dt_timezone.utc)
    assert window_open(mailbox=mailbox, at=before, zone=paris) and window_open(mailbox=mailbox, at=after, zone=paris)
    assert not window_open(mailbox=mailbox, at=after - timedelta(minutes=1), zone=paris)
    # The night of the change: a window opening at 02:30 (a time that does not exist that night)
    # opens at the first minute after the jump.
    night = Mailbox(window_days=list(range(7)), window_start=time(2, 30), window_end=time(4))
    opening = window_next_open(mailbox=night, at=datetime(2026, 3, 29, 0, 0, tzinfo=dt_timezone.utc), zone=paris)
    assert opening.astimezone(paris).hour == 3 and window_open(mailbox=night, at=opening, zone=paris)


def test_the_cap_counts_the_mailboxs_own_day_and_starts_again_at_its_midnight(smtp_servers):
    server = smtp_servers()
    mailbox = mailbox_on(server, daily_cap=1, timezone="America/New_York")
    campaign = campaign_with(mailbox, steps=1)
    late = datetime(2026, 3, 11, 3, 59, tzinfo=dt_timezone.utc)  # 23:59 on the 10th in New York
    due_leads(campaign, 2, late)

    assert outreach_send_due(campaign=campaign, now=late, dry_run=False).sent == 1
    assert mailbox_sent_today(mailbox=mailbox, now=late) == 1
    # 00:00 UTC was already the 11th in London, but New York is still on the 10th until 04:00 UTC.
    assert outreach_send_due(campaign=campaign, now=late + timedelta(seconds=30), dry_run=False).sent == 0
    assert outreach_send_due(campaign=campaign, now=late + timedelta(minutes=1), dry_run=False).sent == 1


def test_a_mailbox_whose_login_fails_is_switched_off_with_its_reason_and_the_other_goes_on(smtp_servers, now):
    good_server = smtp_servers(username="alex", password="right")
    bad_server = smtp_servers(username="sam", password="right")
    good = mailbox_on(good_server, smtp_username="alex", smtp_password="right", daily_cap=50)
    bad = mailbox_on(bad_server, smtp_username="sam", smtp_password="wrong", daily_cap=100)  # most room: tried first
    campaign = campaign_with(good, bad)
    due_leads(campaign, 4, now)

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    bad.refresh_from_db()
    assert not bad.active and bad.disabled_at == now and "login refused: 535" in bad.last_error
    assert result.sent == 4 and len(good_server.messages) == 4 and bad_server.messages == []
    assert any("switched off" in error for error in result.errors)
    assert not OutreachAttempt.objects.filter(mailbox=bad).exists()


def test_a_follow_up_whose_mailbox_is_off_waits_instead_of_moving_to_another(smtp_servers, now):
    one, two = smtp_servers(), smtp_servers()
    first, second = mailbox_on(one), mailbox_on(two)
    campaign = campaign_with(first)
    lead = due_leads(campaign, 1, now)[0]
    outreach_send_due(campaign=campaign, now=now, dry_run=False)
    second.campaigns.add(campaign)
    Mailbox.objects.filter(pk=first.pk).update(active=False, last_error="password changed")

    later = now + timedelta(days=3)
    result = outreach_send_due(campaign=campaign, now=later, dry_run=False)

    assert result.sent == 0 and result.waiting == {"mailbox_off": 1}
    assert two.messages == [] and Lead.objects.get(pk=lead.pk).attempt_count == 1


def test_bounce_protection_pauses_the_campaign_at_the_third_hard_bounce_of_its_last_50(smtp_servers, now):
    server = smtp_servers()
    campaign = campaign_with(mailbox_on(server), quota=50, steps=1)
    leads = due_leads(campaign, 20, now)
    for lead in leads[:3]:
        server.refuse[lead.email] = "550 5.1.1 No such user"

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    campaign.refresh_from_db()
    assert not campaign.active and campaign.pause_reason.startswith("bounce protection: 3 of the last")
    assert result.stopped and result.failed == 3
    assert OutreachAttempt.objects.filter(campaign=campaign, bounced_at__isnull=False).count() == 3
    assert Suppression.objects.filter(email__in=[lead.email for lead in leads[:3]]).count() == 3
    assert result.sent < 17  # it stopped at the third bounce


def test_two_hard_bounces_in_50_sends_do_not_pause(smtp_servers, now):
    server = smtp_servers()
    campaign = campaign_with(mailbox_on(server), quota=50, steps=1)
    leads = due_leads(campaign, 10, now)
    for lead in leads[:2]:
        server.refuse[lead.email] = "550 5.1.1 No such user"
    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)
    campaign.refresh_from_db()
    assert campaign.active and result.sent == 8 and result.failed == 2


def test_an_address_in_one_campaigns_sequence_is_not_started_in_another_until_it_ends(smtp_servers, now):
    server = smtp_servers()
    mailbox = mailbox_on(server)
    first, second = campaign_with(mailbox, steps=2), campaign_with(mailbox, steps=2)
    in_first = LeadFactory(campaign=first, email="pat@shared.example", score=0.5, next_action_at=now)
    in_second = LeadFactory(campaign=second, email="pat@shared.example", score=0.5, next_action_at=now)

    assert outreach_send_due(campaign=first, now=now, dry_run=False).sent == 1
    held = outreach_send_due(campaign=second, now=now, dry_run=False)

    in_second.refresh_from_db()
    assert held.sent == 0 and held.skipped == 1 and "another campaign's sequence" in held.notes[0]
    assert in_second.next_action_at == now + timedelta(days=1) and in_second.attempt_count == 0
    event = in_second.events.get(kind=LeadEvent.Kind.POSTPONED)
    assert f"campaign #{first.pk}" in event.reason

    # The first sequence ends (its lead is LOST after its last email): the second may start.
    Lead.objects.filter(pk=in_first.pk).update(status=Lead.Status.LOST, next_action_at=None)
    assert outreach_send_due(campaign=second, now=now + timedelta(days=1), dry_run=False).sent == 1
    assert [m["To"] for m in server.messages] == ["pat@shared.example"] * 2


def test_a_reply_in_one_campaign_stops_every_sequence_to_that_address(smtp_servers, now):
    server = smtp_servers()
    mailbox = mailbox_on(server)
    first, second = campaign_with(mailbox), campaign_with(mailbox)
    replied = LeadFactory(campaign=first, email="kim@shared.example", score=0.5, next_action_at=now)
    other = LeadFactory(campaign=second, email="kim@shared.example", score=0.5, next_action_at=now + timedelta(days=2))

    lead_mark_replied(lead=replied, now=now)

    other.refresh_from_db()
    assert other.next_action_at is None and other.stopped_reason == f"replied in campaign #{first.pk}"
    assert other.events.filter(kind=LeadEvent.Kind.STOPPED, reason__contains="replied").exists()
    assert outreach_send_due(campaign=second, now=now + timedelta(days=3), dry_run=False).sent == 0


def test_an_address_suppressed_after_the_run_read_the_list_is_not_mailed(smtp_servers, now):
    """The claim looks at the suppression list again: an unsubscribe a second ago holds."""
    from outreach.claims import SUPPRESSED, attempt_claim

    server = smtp_servers()
    mailbox = mailbox_on(server)
    campaign = campaign_with(mailbox)
    lead = due_leads(campaign, 1, now)[0]
    Suppression.objects.create(email=lead.email, reason=Suppression.Reason.UNSUBSCRIBED)

    claimed = attempt_claim(campaign=campaign, lead=lead, step=1, subject="s", message_id="<m@x>", now=now,
                            mailbox=mailbox)
    assert claimed == SUPPRESSED and not OutreachAttempt.objects.exists()


def test_a_dry_run_through_mailboxes_counts_what_their_caps_allow_and_names_the_mailbox(smtp_servers, now):
    one, two = smtp_servers(), smtp_servers()
    big, small = mailbox_on(one, daily_cap=3), mailbox_on(two, daily_cap=2)
    campaign = campaign_with(big, small)
    due_leads(campaign, 10, now)

    result = outreach_send_due(campaign=campaign, now=now, dry_run=True)

    assert result.sent == 5 and result.waiting == {"mailbox_cap": 5}
    assert Counter(p["mailbox"] for p in result.previews) == {big.name: 3, small.name: 2}
    assert all("Unsubscribe in one click" in p["body"] for p in result.previews)
    assert one.messages == two.messages == [] and not OutreachAttempt.objects.exists()


def test_the_warm_up_day_is_counted_from_its_start(now):
    from outreach.limits import mailbox_warmup_day

    mailbox = Mailbox(daily_cap=20, warmup_start=5, warmup_step=5, warmup_started_on=date(2026, 3, 8), timezone="UTC")
    assert mailbox_warmup_day(mailbox=mailbox, now=now) == 3  # the 10th: day 3, cap 15
    assert mailbox_cap_today(mailbox=mailbox, now=now) == 15
    assert mailbox_warmup_day(mailbox=mailbox, now=now + timedelta(days=1)) is None  # cap 20 reached


def test_run_cam_cycle_sends_what_the_mailboxes_allow_now_and_says_how_much_waits(smtp_servers, capsys):
    from django.utils import timezone

    first, second = smtp_servers(), smtp_servers()
    campaign = campaign_with(mailbox_on(first, daily_cap=3), mailbox_on(second, daily_cap=2, min_gap_seconds=600))
    due_leads(campaign, 8, timezone.now() - timedelta(minutes=1))

    call_command("run_cam_cycle", "--campaign-id", str(campaign.pk), "--no-dry-run")

    out = capsys.readouterr().out
    header, _, row = out.splitlines()[1:4]
    cells = dict(zip(header.split()[1:], row.split()[-10:]))
    assert (cells["sent"], cells["skipped"], cells["waiting"]) == ("4", "4", "4")
    # The first mailbox is full, the second waits its gap: the gap passes first, so that is the reason given.
    assert "4 due lead(s) wait for their mailbox: 4 for the gap between a mailbox's sends" in out
    assert (len(first.messages), len(second.messages)) == (3, 1)


def test_a_mailbox_without_an_smtp_host_is_switched_off_rather_than_sending_through_this_machine(smtp_servers, now):
    server = smtp_servers()
    broken = mailbox_on(server, smtp_host="", daily_cap=100)
    campaign = campaign_with(broken, mailbox_on(server, daily_cap=5))
    due_leads(campaign, 2, now)

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    broken.refresh_from_db()
    assert not broken.active and broken.last_error == "the mailbox has no SMTP host"
    assert result.sent == 2 and not OutreachAttempt.objects.filter(mailbox=broken).exists()


def test_a_password_the_key_cannot_decrypt_switches_the_mailbox_off_with_the_reason(smtp_servers, now, settings):
    from cryptography.fernet import Fernet
    from django.db import connection

    server = smtp_servers(username="alex", password="right")
    mailbox = mailbox_on(server, smtp_username="alex", smtp_password="right")
    campaign = campaign_with(mailbox)
    due_leads(campaign, 1, now)
    # The password as another installation's key encrypted it: this key cannot read it.
    foreign = Fernet(Fernet.generate_key()).encrypt(b"right").decode()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE outreach_mailbox SET smtp_password = %s WHERE id = %s", [foreign, mailbox.pk])

    result = outreach_send_due(campaign=campaign, now=now, dry_run=False)

    mailbox.refresh_from_db()
    assert not mailbox.active and "cannot be decrypted: CAM_ENCRYPTION_KEY" in mailbox.last_error
    assert result.sent == 0 and server.messages == []


def test_passwords_are_stored_encrypted_and_read_back_in_clear(now):
    from django.db import connection

    mailbox = MailboxFactory(smtp_password="s3cret-pass", imap_password="imap-pass")
    with connection.cursor() as cursor:
        cursor.execute("SELECT smtp_password, imap_password FROM outreach_mailbox WHERE id = %s", [mailbox.pk])
        stored = cursor.fetchone()
    assert all(value.startswith("gAAAAA") and "pass" not in value for value in stored)
    mailbox = Mailbox.objects.get(pk=mailbox.pk)
    assert (mailbox.smtp_password, mailbox.imap_password) == ("s3cret-pass", "imap-pass")
