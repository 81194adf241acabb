"""Classifying what comes back (SPEC §9) from messages as mail servers and clients write them:
replies from Gmail and Outlook (quoted history stripped), out-of-office replies with and without
RFC 3834 headers, Postfix and Exchange delivery status notifications, an unsubscribe request."""

from pathlib import Path

import pytest

from outreach.inbound import message_parse, new_text

MAIL = Path(__file__).parent / "mail"


def parse(name: str):
    return message_parse((MAIL / name).read_bytes())


def test_a_gmail_reply_is_a_reply_matched_by_in_reply_to_with_its_quoted_history_stripped():
    parsed = parse("gmail_reply.eml")
    assert parsed.kind == "reply" and parsed.in_reply_to == ["<177313.1@agency.example>"] * 2
    assert parsed.from_email == "jane@acme.example" and parsed.from_name == "Jane Doe"
    assert parsed.text == "Hi Alex,\n\nSounds interesting, can we talk on Thursday?\n\nJane"
    assert parsed.message_id == "<CAF=reply1@mail.gmail.com>" and parsed.sent_at.isoformat() == "2026-03-10T11:02:33+01:00"


def test_an_outlook_reply_in_german_loses_its_quoted_original():
    parsed = parse("outlook_reply_de.eml")
    assert parsed.kind == "reply" and parsed.subject == "AW: Idee für Firma"
    assert parsed.text == "Hallo Alex,\n\ndanke, bitte schicken Sie mir ein Angebot.\n\nGrüße\nHans"
    assert parsed.from_name == "Müller, Hans"


def test_an_out_of_office_is_told_by_its_auto_submitted_header_or_its_subject():
    headed = parse("ooo_auto_submitted.eml")
    assert headed.kind == "auto_reply" and headed.evidence == {"Auto-Submitted": "auto-replied"}
    french = parse("ooo_subject_only_fr.eml")
    assert french.kind == "auto_reply" and french.evidence["subject"].lower() == "réponse automatique"


def test_a_postfix_delivery_status_notification_is_a_hard_bounce_of_the_original_message():
    parsed = parse("postfix_hard_bounce.eml")
    assert parsed.kind == "bounce" and parsed.bounce_hard
    assert parsed.bounce_recipient == "nobody@acme.example" and parsed.bounce_message_id == "<177313.9@agency.example>"
    assert parsed.evidence["status"] == "5.1.1"


def test_an_exchange_non_delivery_report_is_a_hard_bounce_named_by_its_rfc822_headers():
    parsed = parse("exchange_hard_bounce.eml")
    assert parsed.kind == "bounce" and parsed.bounce_hard
    assert parsed.bounce_recipient == "gone@firma.example" and parsed.bounce_message_id == "<177313.11@agency.example>"
    assert parsed.evidence["status"] == "5.1.10"


def test_a_postfix_delay_warning_is_a_soft_bounce():
    parsed = parse("postfix_delayed.eml")
    assert parsed.kind == "bounce" and not parsed.bounce_hard
    assert (parsed.bounce_recipient, parsed.evidence["status"]) == ("busy@acme.example", "4.4.1")


def test_a_qmail_bounce_without_a_delivery_report_is_read_by_flufl_bounce():
    parsed = parse("qmail_bounce.eml")
    assert parsed.kind == "bounce" and parsed.bounce_hard
    assert parsed.bounce_recipient == "nope@example.net"  # not the sender's own address in the quoted copy
    assert parsed.bounce_message_id == "<177313.5@agency.example>" and parsed.evidence["status"] == "5.1.1"


def test_an_exchange_delay_notice_is_a_soft_bounce():
    parsed = parse("exchange_soft_bounce.eml")
    assert parsed.kind == "bounce" and not parsed.bounce_hard
    assert parsed.bounce_recipient == "slow@acme.example" and parsed.bounce_message_id == "<177313.7@agency.example>"


def test_a_reply_asking_to_be_removed_is_an_unsubscribe_request_but_only_in_its_new_text():
    parsed = parse("unsubscribe_reply.eml")
    assert parsed.kind == "unsubscribe" and parsed.evidence == {"words": "remove me"}
    # The word in the quoted history (our own footer) does not count.
    raw = (MAIL / "gmail_reply.eml").read_bytes().replace(b"Sent by Alex", b"Unsubscribe: link")
    assert message_parse(raw).kind == "reply"


@pytest.mark.parametrize("raw", [b"", b"\x00\xff\xfe garbage", b"From: <>\r\nSubject: =?utf-8?B?////?=\r\n\r\n",
                                 b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno parts"])
def test_garbage_is_parsed_into_something_rather_than_raising(raw):
    parsed = message_parse(raw)
    assert parsed.kind in ("reply", "bounce", "auto_reply", "unsubscribe")


def test_new_text_stops_at_the_first_quote_marker():
    assert new_text("Yes please.\n\nLe mar. 10 mars 2026 à 10:00, Alex <a@b.c> a écrit :\n> Hi") == "Yes please."
