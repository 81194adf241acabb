"""ESP webhooks (SPEC §9): what an ESP tells CAM about its mail, through django-anymail's tracking
and inbound webhooks, feeds the same classification and actions as the mailboxes' IMAP reading.

- Tracking: bounced and rejected are hard bounces, deferred a soft one, complained and
  unsubscribed suppress the address (complaints as such), autoresponded delays the follow-up.
  Other events (delivered, opened…) change nothing and are not kept.
- Inbound: the message the ESP received is parsed and acted on as if read by IMAP.
- Each event is stored under its ESP's event id (InboundMessage.provider_event_id, unique), so a
  provider posting it again changes nothing.
- Every call needs CAM_WEBHOOK_SECRET ("user:password", HTTP basic auth, checked by anymail;
  ESPs that sign their calls need their signing key too): without it the URLs refuse all calls.
"""

import functools
import hashlib
import logging
from email.utils import getaddresses

from anymail.signals import inbound, tracking
from django.conf import settings
from django.dispatch import receiver
from django.http import JsonResponse
from django.urls import URLPattern, URLResolver
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from leads.rows import email_normalise
from outreach.inbound import Parsed, message_parse
from outreach.models import InboundMessage, Mailbox, OutreachAttempt
from outreach.replies import inbound_store

logger = logging.getLogger(__name__)
Kind = InboundMessage.Kind

# anymail's normalised event types CAM acts on, and as what.
_TRACKED = {
    "bounced": (Kind.BOUNCE, True),
    "rejected": (Kind.BOUNCE, True),
    "deferred": (Kind.BOUNCE, False),
    "complained": (Kind.UNSUBSCRIBE, False),
    "unsubscribed": (Kind.UNSUBSCRIBE, False),
    "autoresponded": (Kind.AUTO_REPLY, False),
}


def webhook_secret_required(view):
    """Refuse every call while CAM_WEBHOOK_SECRET is unset: anymail would accept unauthenticated
    calls then (with only a warning), and anyone could suppress any address."""

    @functools.wraps(view)
    def guarded(request, *args, **kwargs):
        if not settings.CAM_WEBHOOK_SECRET:
            return JsonResponse({"detail": "ESP webhooks are off: set CAM_WEBHOOK_SECRET (user:password) and "
                                           "give the ESP https://user:password@host/anymail/<esp>/…/"}, status=403)
        return view(request, *args, **kwargs)

    return csrf_exempt(guarded)


def guarded_anymail_urls() -> tuple[list, str]:
    """anymail's webhook URLs (anymail/<esp>/tracking/, anymail/<esp>/inbound/), each behind
    webhook_secret_required."""
    from anymail.urls import urlpatterns

    def guard(pattern):
        if isinstance(pattern, URLResolver):
            return pattern
        return URLPattern(pattern.pattern, webhook_secret_required(pattern.callback), pattern.default_args,
                          pattern.name)

    return [guard(pattern) for pattern in urlpatterns], "anymail"


def _event_id(esp: str, kind: str, event, fallback: bytes) -> str:
    given = str(getattr(event, "event_id", "") or "")
    if given:
        return f"{esp}:{kind}:{given}"[:300]
    return f"{esp}:{kind}:sha256:{hashlib.sha256(fallback).hexdigest()}"


@receiver(tracking, dispatch_uid="cam-esp-tracking")
def esp_tracking(sender, event, esp_name: str, **kwargs) -> InboundMessage | None:
    """One tracking event: stored and acted on once, if it is one CAM acts on."""
    if event.event_type not in _TRACKED:
        return None
    kind, hard = _TRACKED[event.event_type]
    hard = hard and not _temporary(event)
    recipient = email_normalise(event.recipient or "")
    detail = " ".join(str(part) for part in (event.reject_reason, event.description, event.mta_response) if part)
    parsed = Parsed(
        kind=kind, from_email=recipient, subject=f"{esp_name}: {event.event_type}", text=detail[:2000],
        bounce_hard=hard, bounce_recipient=recipient if kind == Kind.BOUNCE else "",
        sent_at=event.timestamp, evidence={"esp": esp_name, "event": event.event_type,
                                           "reason": str(event.reject_reason or ""), "detail": detail[:500]},
    )
    attempt_ids = _attempt_message_ids(esp_name, event.message_id)
    parsed.in_reply_to = attempt_ids
    parsed.bounce_message_id = attempt_ids[0] if attempt_ids else ""
    fallback = f"{event.event_type}|{event.message_id}|{recipient}|{event.timestamp}".encode()
    stored = inbound_store(parsed=parsed, now=timezone.now(),
                           provider_event_id=_event_id(esp_name, "tracking", event, fallback))
    logger.info("%s %s for %s: %s", esp_name, event.event_type, recipient,
                stored.action if stored else "already applied")
    return stored


def _temporary(event) -> bool:
    """A "bounced" event the ESP itself calls temporary (Postmark's SoftBounce, Mailgun's
    temporary failures): a soft bounce."""
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    return (raw.get("Type") in ("SoftBounce", "Transient", "DnsError")
            or str(raw.get("severity", "")).lower() == "temporary"
            or str(event.mta_response or "").removeprefix("smtp;").strip().startswith("4"))


def _attempt_message_ids(esp: str, provider_message_id) -> list[str]:
    """The Message-ID CAM gave the email the ESP names by its own id."""
    if not provider_message_id:
        return []
    return list(OutreachAttempt.objects.filter(provider_message_id=str(provider_message_id)[:255])
                .exclude(message_id="").values_list("message_id", flat=True)[:1])


@receiver(inbound, dispatch_uid="cam-esp-inbound")
def esp_inbound(sender, event, esp_name: str, **kwargs) -> InboundMessage | None:
    """A message the ESP received for one of the mailboxes: parsed and acted on like IMAP mail."""
    raw = event.message.as_bytes()
    parsed = message_parse(raw)
    recipients = {email_normalise(address) for address in _addresses(event.message)}
    mailbox = Mailbox.objects.filter(from_email__in=recipients).order_by("pk").first() if recipients else None
    return inbound_store(parsed=parsed, now=timezone.now(), mailbox=mailbox,
                         provider_event_id=_event_id(esp_name, "inbound", event, raw))


def _addresses(message) -> list[str]:
    found = []
    for header in ("To", "Cc", "Delivered-To", "X-Original-To"):
        for value in message.get_all(header) or []:
            found += [address for _, address in getaddresses([str(value)])]
    return found
