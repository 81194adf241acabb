"""What every email carries for the law and the mailbox providers (SPEC §8, RFC 8058): a footer
with the sender's identity, postal address and unsubscribe link, and the List-Unsubscribe headers
for one-click unsubscribe.

The link's token is the recipient's address signed with the project's key and its own salt
(django.core.signing): it needs no database row, so it still works after the lead is erased,
and a token changed by one character is refused.
"""

from datetime import datetime

from django.conf import settings
from django.core import signing

from leads.services import Actor
from outreach.models import Suppression
from outreach.suppression import suppression_add

SALT = "cam.outreach.unsubscribe"


def unsubscribe_token(email: str) -> str:
    return signing.dumps(email.strip().lower(), salt=SALT, compress=True)


# Longer than any token this module makes (an address of 254 characters signs to about 400).
MAX_TOKEN_LENGTH = 500


def unsubscribe_email(token: str) -> str | None:
    """The address a token was made for; None for a tampered, truncated, over-long or foreign
    token (an over-long one is not even decoded)."""
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        email = signing.loads(token, salt=SALT)
    except (signing.BadSignature, ValueError, UnicodeError):
        return None
    return email if isinstance(email, str) and "@" in email else None


def unsubscribe_url(email: str) -> str:
    return f"{settings.CAM_SITE_URL}/u/{unsubscribe_token(email)}"


def message_footer(*, sender_name: str, sender_email: str, postal_address: str, email: str) -> str:
    """The plain-text footer: who sends, from where, and how to stop it."""
    who = f"{sender_name} <{sender_email}>" if sender_name else sender_email
    lines = ["", "--", f"Sent by {who}"]
    lines += [line.strip() for line in postal_address.splitlines() if line.strip()]
    lines.append(f"Not interested? Unsubscribe in one click: {unsubscribe_url(email)}")
    return "\n".join(lines) + "\n"


def unsubscribe_headers(*, email: str, sender_email: str) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe (and RFC 2369's mailto, which the inbox reader answers)."""
    return {
        "List-Unsubscribe": f"<{unsubscribe_url(email)}>, <mailto:{sender_email}?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def email_masked(email: str) -> str:
    """j***@example.com: enough for the person to recognise their address, not for a stranger
    holding the link to read it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def unsubscribe_apply(*, token: str, now: datetime, how: str) -> str | None:
    """Suppress the token's address at once in every campaign (its due leads stop, each with an
    event); None, and nothing changed, for a token that is not ours. Idempotent: an address
    already suppressed, for whatever reason, stays as it is."""
    email = unsubscribe_email(token)
    if email is None:
        return None
    suppression_add(email=email, reason=Suppression.Reason.UNSUBSCRIBED, note=how, now=now,
                    actor=Actor("unsubscribe link"))
    return email
