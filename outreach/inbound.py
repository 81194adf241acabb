"""Reading what comes back (SPEC §9): parse a raw message, say what it is (a reply, an auto-reply,
a bounce, an unsubscribe request) and what it answers.

Plain functions over the standard library's email parser: the inbox reader (outreach.inbox)
fetches, stores and acts; nothing here touches the database but the matching.
"""

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from django.utils.html import strip_tags
from flufl.bounce import all_failures

logger = logging.getLogger(__name__)

# Auto-replies by their headers (RFC 3834 and the de-facto ones), then by their subjects.
_AUTO_PRECEDENCE = {"auto_reply", "bulk", "junk", "list"}
_OOO_SUBJECT = re.compile(
    r"\b(out of (the )?office|automatic reply|auto(matic)?[- ]?reply|autoreply|away from (the )?office|on vacation|"
    r"on leave|abwesenheit(snotiz)?|automatische antwort|nicht im b[üu]ro|absence|absent|r[ée]ponse automatique|"
    r"message d'absence|fuera de la oficina|respuesta autom[áa]tica|ausente|fuori ufficio|risposta automatica|"
    r"assente|afwezig|automatisch antwoord|niet op kantoor|resposta autom[áa]tica|fora do escrit[óo]rio)\b",
    re.IGNORECASE,
)
_BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|delivery status notification|delivery (has )?failed|returned mail|failure notice|"
    r"mail delivery (failed|failure|subsystem)|non[- ]?remise|unzustellbar|nicht zugestellt)", re.IGNORECASE)
_UNSUBSCRIBE = re.compile(
    r"(\bunsubscribe\b|\bremove me\b|\btake me off\b|\bstop (e-?mailing|contacting|writing)\b|\bopt[- ]?out\b|"
    r"\bdo not (e-?mail|contact) me\b|\bdon't (e-?mail|contact) me\b|d[ée]sinscri|d[ée]sabonne|ne plus recevoir|"
    r"\babmelden\b|austragen|keine (weiteren )?e-?mails|darme de baja|darse de baja|cancelar suscripci|"
    r"\bcancella(re)? iscrizione\b|afmelden|uitschrijven|descadastrar|cancelar inscri)",
    re.IGNORECASE,
)
# Where the quoted history of a reply starts (Gmail, Outlook, Apple Mail, Thunderbird, in several languages).
_QUOTE_START = re.compile(
    r"^(On .{1,200} wrote:|Le .{1,200} a écrit\s?:|Am .{1,200} schrieb .{0,200}:|El .{1,200} escribió:|"
    r"Il giorno .{1,200} ha scritto:|Op .{1,200} schreef .{0,200}:|Em .{1,200} escreveu:|"
    r"-{2,}\s*Original Message\s*-{2,}|-{2,}\s*Ursprüngliche Nachricht\s*-{2,}|_{8,}|"
    r"From:\s.+|De\s?:\s.+|Von:\s.+|Van:\s.+|Da:\s.+)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
MAX_TEXT = 20_000
# The original message's Message-ID, quoted in a plain-text bounce.
_ORIGINAL_ID = re.compile(r"(?im)^\s*message-id:\s*(<[^<>\s]{1,500}>)")


@dataclass
class Parsed:
    message_id: str = ""
    in_reply_to: list[str] = field(default_factory=list)
    from_email: str = ""
    from_name: str = ""
    to: str = ""
    subject: str = ""
    sent_at: datetime | None = None
    text: str = ""  # the new text, quoted history removed
    kind: str = "reply"
    bounce_hard: bool = False
    bounce_recipient: str = ""
    bounce_message_id: str = ""  # the Message-ID of the message that bounced
    evidence: dict = field(default_factory=dict)


def _ids(value: str | None) -> list[str]:
    return re.findall(r"<[^<>\s]{1,500}>", value or "")


def _header(message, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # a header the parser cannot decode: as good as absent
        return ""
    return " ".join(str(value).split())[:1000] if value is not None else ""


def _plain_text(message) -> str:
    """The message's text: its text/plain part, else its HTML without the tags."""
    try:
        part = message.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        content = part.get_content()
    except Exception:  # an undecodable part: no text rather than no message
        return ""
    if part.get_content_subtype() == "html":
        content = strip_tags(re.sub(r"(?is)<(style|script).*?</\1>", "", content))
    return content[: MAX_TEXT * 5]


def new_text(text: str) -> str:
    """The reply's own words: before the first quoted line ("> …") or the "On … wrote:" line."""
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.lstrip().startswith(">") or _QUOTE_START.match(line.strip()):
            break
        lines.append(line)
    return "\n".join(lines).strip()[:MAX_TEXT]


def message_parse(raw: bytes) -> Parsed:
    """What a raw message says about itself, and what kind it is (classify)."""
    message = message_from_bytes(raw, policy=policy.default)
    name, address = parseaddr(_header(message, "From"))
    parsed = Parsed(
        message_id=(_ids(_header(message, "Message-ID")) or [""])[0],
        in_reply_to=[*_ids(_header(message, "In-Reply-To")), *_ids(_header(message, "References"))],
        from_email=address.strip().lower()[:254], from_name=name[:200],
        to=", ".join(a for _, a in getaddresses([_header(message, "To")]))[:1000],
        subject=_header(message, "Subject"),
    )
    try:
        parsed.sent_at = parsedate_to_datetime(_header(message, "Date")) if _header(message, "Date") else None
    except (TypeError, ValueError):
        parsed.sent_at = None
    if parsed.sent_at is not None and parsed.sent_at.tzinfo is None:
        parsed.sent_at = None
    parsed.text = new_text(_plain_text(message))
    _classify(message, parsed)
    return parsed


def _classify(message: EmailMessage, parsed: Parsed) -> None:
    if _bounce(message, parsed):
        parsed.kind = "bounce"
        return
    auto = {name: _header(message, name) for name in ("Auto-Submitted", "X-Autoreply", "X-Autorespond", "Precedence")}
    if auto["Auto-Submitted"] and auto["Auto-Submitted"].lower() != "no":
        parsed.kind, parsed.evidence = "auto_reply", {"Auto-Submitted": auto["Auto-Submitted"]}
    elif auto["X-Autoreply"] or auto["X-Autorespond"]:
        parsed.kind = "auto_reply"
        parsed.evidence = {k: v for k, v in auto.items() if k.startswith("X-") and v}
    elif auto["Precedence"].lower() in _AUTO_PRECEDENCE:
        parsed.kind, parsed.evidence = "auto_reply", {"Precedence": auto["Precedence"]}
    elif match := _OOO_SUBJECT.search(parsed.subject):
        parsed.kind, parsed.evidence = "auto_reply", {"subject": match.group(0)}
    elif match := (_UNSUBSCRIBE.search(parsed.subject) or _UNSUBSCRIBE.search(parsed.text[:2000])):
        parsed.kind, parsed.evidence = "unsubscribe", {"words": match.group(0)}
    else:
        parsed.kind = "reply"


def _bounce(message: EmailMessage, parsed: Parsed) -> bool:
    """A delivery status notification (RFC 3464), or what a mail server sends instead of one.
    Hard when the action failed with a 5.x.x status; soft when delayed or 4.x.x."""
    content_type = message.get_content_type()
    report = content_type == "multipart/report" and message.get_param("report-type", "").lower() == "delivery-status"
    by_sender = bool(_BOUNCE_SENDER.match(parsed.from_email)) or (
        not parsed.from_email and bool(_BOUNCE_SUBJECT.search(parsed.subject)))
    if not report and not (by_sender and _BOUNCE_SUBJECT.search(parsed.subject)):
        return False
    status, action, recipient = "", "", ""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            for block in part.get_payload() or []:
                fields = {k.lower(): " ".join(str(v).split()) for k, v in block.items()}
                status = status or fields.get("status", "")
                action = action or fields.get("action", "").lower()
                recipient = recipient or fields.get("final-recipient", "").split(";")[-1].strip()
        elif kind in ("message/rfc822", "text/rfc822-headers") and not parsed.bounce_message_id:
            original = part.get_payload()[0] if kind == "message/rfc822" and part.is_multipart() else None
            headers = original if original is not None else message_from_bytes(
                part.get_payload(decode=True) or b"", policy=policy.default)
            parsed.bounce_message_id = (_ids(_header(headers, "Message-ID")) or [""])[0]
    if not status:  # no RFC 3464 report: flufl.bounce knows the formats MTAs used instead
        temporary, permanent = _failures(message)
        failed = sorted(permanent or temporary)
        recipient = recipient or (failed[0].decode("utf-8", "replace") if failed else "")
        text = _plain_text(message)
        found = re.search(r"\b[45]\.\d{1,3}\.\d{1,3}\b", text)
        status = found.group(0) if found else ("5.0.0" if permanent else "4.0.0" if temporary else "")
        if not parsed.bounce_message_id and (found := _ORIGINAL_ID.search(text)):
            parsed.bounce_message_id = found.group(1)
    parsed.bounce_hard = status.startswith("5") and action != "delayed"
    parsed.bounce_recipient = recipient.lower()[:254]
    parsed.evidence = {"status": status, "action": action, "recipient": parsed.bounce_recipient,
                       "report": "delivery-status" if report else "mailer-daemon"}
    return True


def _failures(message) -> tuple[frozenset, frozenset]:
    """flufl.bounce's (temporary, permanent) failed addresses; none for a message so broken that
    one of its detectors gives up (it raises on some, after logging them)."""
    try:
        return all_failures(message)
    except Exception as exc:  # noqa: BLE001 — a malformed bounce names nobody; the kind stays "bounce"
        logger.info("flufl.bounce could not read a bounce: %s: %s", type(exc).__name__, exc)
        return frozenset(), frozenset()
