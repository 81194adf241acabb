"""Mailboxes: their health as sending finds it (a failed login switches one off with its reason),
staff's changes, and the login check that says what fails before anything is sent.

The sending code calls the first; staff switch a mailbox back on by editing it (active)."""

import imaplib
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from outreach.models import Mailbox
from outreach.transport import LoginFailed, Mailer, MailServerDown, mailbox_secret


def mailbox_disable(*, mailbox: Mailbox, reason: str, now: datetime) -> bool:
    """Switch the mailbox off because it cannot send (its login failed): its leads wait, the
    campaign's other mailboxes go on. False if it was already off."""
    reason = reason[:2000]
    mailbox.active, mailbox.last_error, mailbox.disabled_at = False, reason, now
    return bool(Mailbox.objects.filter(pk=mailbox.pk, active=True).update(active=False, last_error=reason, disabled_at=now))


def mailbox_record_error(*, mailbox: Mailbox, error: str) -> None:
    """A problem that may pass (the server did not answer): noted, the mailbox stays on."""
    mailbox.last_error = error[:2000]
    Mailbox.objects.filter(pk=mailbox.pk).update(last_error=mailbox.last_error)


# --- staff's changes ------------------------------------------------------------------------------

# Fields staff set (the API, the console, the admin); the secrets among them are kept when left out.
EDITABLE_FIELDS = (
    "name", "kind", "from_name", "from_email", "smtp_host", "smtp_port", "smtp_username", "smtp_password",
    "smtp_security", "esp", "esp_api_key", "esp_settings", "imap_host", "imap_port", "imap_username",
    "imap_password", "imap_security", "imap_inbox", "imap_sent", "daily_cap", "warmup_start", "warmup_step",
    "warmup_started_on", "min_gap_seconds", "gap_jitter_seconds", "window_days", "window_start", "window_end",
    "timezone", "active",
)
SECRET_FIELDS = ("smtp_password", "imap_password", "esp_api_key")


ESP_SETTINGS = ("api_url", "sender_domain")


def mailbox_settings_errors(value) -> dict[str, str]:
    """What a mailbox's settings lack, by field: `value(name)` gives each setting as it will be
    saved (a change may give only some). The API and the forms ask the same questions."""
    errors = {}
    if value("kind") == Mailbox.Kind.ESP:
        if not value("esp"):
            errors["esp"] = "An ESP mailbox needs its ESP."
        if not value("esp_api_key"):
            errors["esp_api_key"] = "An ESP mailbox needs the ESP's API key."
    elif not value("smtp_host"):
        errors["smtp_host"] = "An SMTP mailbox needs its server."
    if value("imap_host") and not value("imap_username"):
        errors["imap_username"] = "Reading replies needs the IMAP login."
    settings = value("esp_settings") or {}
    if not isinstance(settings, dict) or set(settings) - set(ESP_SETTINGS) or not all(
            isinstance(v, str) for v in settings.values()):
        errors["esp_settings"] = f"Only string settings named {' or '.join(ESP_SETTINGS)}."
    return errors


class MailboxInUse(Exception):
    """A mailbox that sent cannot be deleted: its caps and its threads depend on its attempts."""


@transaction.atomic
def mailbox_save(*, mailbox: Mailbox, data: dict, campaigns=None) -> Mailbox:
    """Create or change a mailbox from validated `data`; `campaigns` (if given) becomes the list
    of campaigns sending through it. Switching it on again clears `disabled_at` (the last error
    stays, as history, until the next one)."""
    # As stored: a form may already have set the new values on `mailbox`.
    was_active = Mailbox.objects.filter(pk=mailbox.pk).values_list("active", flat=True).first() if mailbox.pk else None
    for name in EDITABLE_FIELDS:
        if name in data:
            setattr(mailbox, name, data[name])
    if mailbox.active and was_active is False:
        mailbox.disabled_at = None
    mailbox.save()
    if campaigns is not None:
        mailbox.campaigns.set(campaigns)
    return mailbox


def mailbox_delete(*, mailbox: Mailbox) -> None:
    if mailbox.attempts.exists():
        raise MailboxInUse(f"mailbox {mailbox.name!r} has sent mail: its caps and threads depend on it; "
                           "switch it off (active: false) instead")
    mailbox.delete()


# --- the login check ------------------------------------------------------------------------------

CHECK_SECONDS = 10


@dataclass(frozen=True)
class Check:
    ok: bool | None  # None: not checked (not configured, or cannot be without sending)
    detail: str


def mailbox_check(*, mailbox: Mailbox) -> dict[str, Check]:
    """Log in to the mailbox's SMTP server (or say an ESP's key is checked by its first send)
    and, when set, its IMAP server, within CHECK_SECONDS each; say exactly what failed. Nothing
    is sent and nothing is changed, not even the mailbox's last error."""
    return {"smtp": _check_smtp(mailbox), "imap": _check_imap(mailbox)}


def _check_smtp(mailbox: Mailbox) -> Check:
    if mailbox.kind == Mailbox.Kind.ESP:
        return Check(None, f"{mailbox.get_esp_display() or 'the ESP'}: the API key is checked by the first send "
                           "(a refused key switches the mailbox off with the ESP's answer)")
    mailer = Mailer(send_seconds=CHECK_SECONDS, mailbox=mailbox)
    try:
        mailer.ready()
    except LoginFailed as exc:
        return Check(False, f"authentication failed: {exc}")
    except MailServerDown as exc:
        return Check(False, f"cannot connect to {mailbox.smtp_host}:{mailbox.smtp_port}: {exc}")
    finally:
        mailer.close()
    login = f" as {mailbox.smtp_username}" if mailbox.smtp_username else " (no login set)"
    return Check(True, f"connected to {mailbox.smtp_host}:{mailbox.smtp_port} "
                       f"({mailbox.get_smtp_security_display()}){login}")


def _check_imap(mailbox: Mailbox) -> Check:
    from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted
    from imap_tools.errors import MailboxLoginError

    if not mailbox.imap_host:
        return Check(None, "no IMAP server set: replies are not read from this mailbox")
    kind = {Mailbox.Security.SSL: MailBox, Mailbox.Security.STARTTLS: MailBoxStartTls}.get(
        mailbox.imap_security, MailBoxUnencrypted)
    where = f"{mailbox.imap_host}:{mailbox.imap_port}"
    try:
        password = mailbox_secret(mailbox, "imap_password")
        client = kind(mailbox.imap_host, mailbox.imap_port, timeout=CHECK_SECONDS)
    except LoginFailed as exc:
        return Check(False, str(exc))
    except (OSError, imaplib.IMAP4.error) as exc:
        return Check(False, f"cannot connect to {where}: {_describe(exc)}")
    try:
        try:
            client.login(mailbox.imap_username, password)
        except MailboxLoginError:
            return Check(False, f"authentication failed on {where} for {mailbox.imap_username}")
        missing = [name for name in (mailbox.imap_inbox, mailbox.imap_sent) if not client.folder.exists(name)]
    except (OSError, imaplib.IMAP4.error) as exc:
        return Check(False, f"{where} failed after connecting: {_describe(exc)}")
    finally:
        try:
            client.client.shutdown() if client.login_result is None else client.logout()
        except (OSError, imaplib.IMAP4.error, AttributeError):
            pass
    if missing:
        return Check(False, f"logged in to {where}, but no folder named {', '.join(repr(m) for m in missing)}")
    return Check(True, f"logged in to {where} as {mailbox.imap_username}; folders {mailbox.imap_inbox!r} "
                       f"and {mailbox.imap_sent!r} found")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
