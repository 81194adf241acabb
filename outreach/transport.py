"""Handing one message to the mail server, and knowing what became of it.

SPEC §6: a send that certainly did not leave releases its claim; only a connection lost after
the message was handed over (after DATA) leaves the outcome unknown. Django's `send_mail` path
hides where an SMTP conversation broke, so with the SMTP backend the conversation is driven
step by step here (MAIL, RCPT, DATA, the message, the final reply) on the connection Django's
backend opened (TLS, login and timeouts as configured). Other backends (files, memory) are
called as they are. Every send has a total time limit, enforced by a watchdog that shuts the
socket down: a server that trickles its replies a byte at a time cannot hold a cycle.

A Mailer sends through one mailbox (its SMTP login, or its ESP's API through django-anymail), or
through the environment's EMAIL_* settings when it has none. A mailbox whose login is refused
raises LoginFailed: the caller switches that mailbox off and goes on with the others.
"""

import logging
import re
import smtplib
import socket
import threading
from dataclasses import dataclass
from email.utils import parseaddr

import requests
from anymail.exceptions import AnymailError, AnymailRecipientsRefused, AnymailRequestsAPIError
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.core.mail.message import sanitize_address
from django.core.mail.utils import DNS_NAME

logger = logging.getLogger(__name__)

# What a send came to, besides OutreachAttempt's SENT / FAILED / UNKNOWN statuses.
RELEASED = "released"  # certainly not sent (nothing handed over): the claim is undone
SENDER_REFUSED = "sender_refused"  # MAIL FROM refused: no message would get past it


class MailServerDown(Exception):
    """The mail server cannot be reached or refuses our sender or login: nothing can go out now."""


class LoginFailed(MailServerDown):
    """The mailbox's credentials are refused (or cannot be read): it cannot send until staff fix them."""


class MessageProblem(Exception):
    """The message itself cannot be sent (a header that cannot be encoded, a bad address):
    no server would take it, and retrying will not help."""


@dataclass(frozen=True)
class SendOutcome:
    status: str  # "sent", "failed", "unknown" or RELEASED
    error: str = ""
    # The recipient's server says the address does not exist (5xx to RCPT): suppress it.
    hard_bounce: bool = False
    # The ESP's id for the message (anymail), for its webhooks.
    provider_message_id: str = ""
    # RELEASED because the server hung up (not a time limit): a new connection may take it.
    dropped: bool = False


@dataclass(frozen=True)
class PreparedMessage:
    """A message built and checked before anything is claimed: envelope and bytes."""

    email: EmailMessage
    from_addr: str
    recipients: list[str]
    data: bytes


def message_prepare(email: EmailMessage) -> PreparedMessage:
    """Build the message as the SMTP backend would; MessageProblem if it cannot be built."""
    encoding = email.encoding or settings.DEFAULT_CHARSET
    for address in (email.from_email, *email.recipients()):
        local_part = parseaddr(address)[1].rpartition("@")[0]
        if not local_part.isascii():
            # Django would MIME-encode it into an address no server delivers, and call it sent.
            raise MessageProblem(f"{address!r} has non-ASCII characters before the @: delivering it needs SMTPUTF8")
    try:
        from_addr = sanitize_address(email.from_email, encoding)
        recipients = [sanitize_address(address, encoding) for address in email.recipients()]
        data = email.message().as_bytes(linesep="\r\n")
    except Exception as exc:  # BadHeaderError, ValueError, UnicodeError, …: all mean "this message"
        raise MessageProblem(f"the message cannot be built: {_describe(exc)}") from exc
    if not recipients:
        raise MessageProblem("the message has no recipient")
    return PreparedMessage(email=email, from_addr=from_addr, recipients=recipients, data=data)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def _reply(code: int, text: bytes | str) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(text.split())}"[:500]


_EOLS = re.compile(rb"(?:\r\n|\n|\r(?!\n))")
_LEADING_DOT = re.compile(rb"(?m)^\.")


def _dot_stuffed(data: bytes) -> bytes:
    """The message as DATA carries it (RFC 5321 4.5.2): CRLF line ends, leading dots doubled,
    ended by CRLF . CRLF."""
    data = _LEADING_DOT.sub(b"..", _EOLS.sub(b"\r\n", data))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


# A Fernet token: what an encrypted field returns when CAM_ENCRYPTION_KEY cannot decrypt it
# (django-encrypted-model-fields hands back the stored text rather than raising).
_UNDECRYPTED = re.compile(r"^gAAAAA[A-Za-z0-9_=-]{60,}$")


def mailbox_secret(mailbox, field: str) -> str:
    """A mailbox's password or API key in clear; LoginFailed when the key cannot decrypt it."""
    value = getattr(mailbox, field) or ""
    if _UNDECRYPTED.match(value):
        raise LoginFailed(f"the mailbox's {field.replace('_', ' ')} cannot be decrypted: CAM_ENCRYPTION_KEY is not "
                          "the key it was saved with (enter it again, or restore the old key)")
    return value


def mailbox_backend(mailbox, *, timeout: float):
    """A Django email backend for the mailbox, not yet connected; LoginFailed for settings no
    backend can use (they will not fix themselves)."""
    from outreach.models import ESP_SECRET_ARGUMENT

    if mailbox.kind == mailbox.Kind.ESP:
        if mailbox.esp not in ESP_SECRET_ARGUMENT:
            raise LoginFailed(f"the mailbox's ESP {mailbox.esp!r} is not one CAM sends through")
        options = {key: value for key, value in (mailbox.esp_settings or {}).items() if key in ("api_url", "sender_domain")}
        options[ESP_SECRET_ARGUMENT[mailbox.esp]] = mailbox_secret(mailbox, "esp_api_key")
        return get_connection(f"anymail.backends.{mailbox.esp}.EmailBackend", fail_silently=False, timeout=timeout,
                              **options)
    if not mailbox.smtp_host:  # smtplib would connect to this machine instead
        raise LoginFailed("the mailbox has no SMTP host")
    return SMTPBackend(
        host=mailbox.smtp_host, port=mailbox.smtp_port, username=mailbox.smtp_username,
        password=mailbox_secret(mailbox, "smtp_password"), use_tls=mailbox.smtp_security == "starttls",
        use_ssl=mailbox.smtp_security == "ssl", timeout=timeout, fail_silently=False,
    )


class Mailer:
    """One connection to a mail server for a run of sends, checked before each message: the
    mailbox's, or the environment's (EMAIL_*) when `mailbox` is None."""

    def __init__(self, *, send_seconds: float, mailbox=None):
        self.send_seconds = send_seconds
        self.mailbox = mailbox
        self.backend = None
        self.carried = 0  # messages the open connection has taken

    @property
    def is_smtp(self) -> bool:
        return isinstance(self.backend, SMTPBackend)

    def ready(self) -> None:
        """An open, answering connection, or MailServerDown. An SMTP connection the server
        closed while idle is noticed here (NOOP) and reopened, before anything is claimed."""
        if self.backend is not None and self.is_smtp:
            try:
                alive = self.backend.connection is not None and self.backend.connection.noop()[0] == 250
            except (smtplib.SMTPException, OSError):
                alive = False
            if not alive:
                self.close()
        if self.backend is not None:
            return
        try:
            timeout = min(getattr(settings, "EMAIL_TIMEOUT", None) or self.send_seconds, self.send_seconds)
            if self.mailbox is not None:
                backend = mailbox_backend(self.mailbox, timeout=timeout)
            else:
                backend = get_connection(fail_silently=False, timeout=timeout)
            if isinstance(backend, SMTPBackend):
                _smtp_open(backend, limit=self.send_seconds)
            else:
                backend.open()
        except LoginFailed:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise LoginFailed(f"login refused: {_reply(exc.smtp_code, exc.smtp_error)}") from exc
        except Exception as exc:
            raise MailServerDown(_describe(exc)) from exc
        self.backend = backend
        self.carried = 0

    def close(self) -> None:
        backend, self.backend = self.backend, None
        if backend is None:
            return
        try:
            backend.close()
        except Exception as exc:  # a connection that is already gone: nothing to close
            logger.debug("closing the mail connection: %s", _describe(exc))
            if isinstance(backend, SMTPBackend) and backend.connection is not None:
                backend.connection.close()
                backend.connection = None

    def send(self, message: PreparedMessage) -> SendOutcome:
        """Hand `message` over within `send_seconds` and say what became of it. Raises
        MailServerDown (after closing the connection) when the server refuses our sender."""
        if not self.is_smtp:
            return self._send_other(message)
        outcome = _smtp_deliver(self.backend.connection, message, limit=self.send_seconds)
        if outcome.dropped and self.carried:
            # A server that closes idle connections can do it between our NOOP and our MAIL
            # FROM. Nothing was handed over, so one more try on a new connection is safe.
            self.close()
            try:
                self.ready()
            except MailServerDown:
                return outcome
            outcome = _smtp_deliver(self.backend.connection, message, limit=self.send_seconds)
        if outcome.status == "sent":
            self.carried += 1
        if outcome.status in (RELEASED, "unknown"):
            self.close()  # the connection is in an unknown state: the next send opens a new one
        if outcome.status == SENDER_REFUSED:
            self.close()
            raise MailServerDown(f"the server refused our sender: {outcome.error}")
        return outcome

    def _send_other(self, message: PreparedMessage) -> SendOutcome:
        """Files, memory or an ESP's API: an exception may come after the message left."""
        try:
            sent = self.backend.send_messages([message.email])
        except AnymailRecipientsRefused as exc:
            return SendOutcome("failed", f"recipient refused by the ESP: {_one_line(exc)}", hard_bounce=True)
        except AnymailError as exc:
            return self._esp_failure(exc)
        except Exception as exc:
            self.close()
            return SendOutcome("unknown", _describe(exc))
        if not sent:
            return SendOutcome("failed", "the mail backend did not take the message")
        statuses = getattr(getattr(message.email, "anymail_status", None), "status", None) or set()
        if statuses and statuses <= {"invalid", "rejected", "failed"}:
            return SendOutcome("failed", f"the ESP did not take the message: {', '.join(sorted(statuses))}",
                               hard_bounce=bool(statuses & {"invalid", "rejected"}))
        provider_id = getattr(getattr(message.email, "anymail_status", None), "message_id", None)
        return SendOutcome("sent", provider_message_id=provider_id[:255] if isinstance(provider_id, str) else "")

    def _esp_failure(self, exc: AnymailError) -> SendOutcome:
        """An ESP that answered with an error took nothing; one never reached took nothing;
        a call cut off after it was sent may have been delivered."""
        if getattr(exc, "status_code", None):
            if exc.status_code in (401, 403):
                raise LoginFailed(f"the ESP refused the API key: {_one_line(exc)}") from exc
            return SendOutcome("failed", f"the ESP refused the message: {_one_line(exc)}")
        if isinstance(exc, AnymailRequestsAPIError) and _never_connected(exc):
            self.close()
            return SendOutcome(RELEASED, f"not sent, the ESP could not be reached: {_one_line(exc)}")
        if isinstance(exc, AnymailRequestsAPIError):
            self.close()
            return SendOutcome("unknown", f"the ESP call was cut off: {_one_line(exc)}")
        return SendOutcome("failed", f"the message was not accepted: {_one_line(exc)}")


def _one_line(exc: BaseException) -> str:
    """An anymail error on one line: what failed, and the ESP's answer."""
    return " ".join(str(exc).split())[:500] or type(exc).__name__


def _never_connected(exc: BaseException) -> bool:
    """A requests failure that happened before anything was sent: the connection was refused
    or could not be made in time."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause = exc.__cause__
    reason = getattr(cause.args[0], "reason", None) if cause is not None and cause.args else None
    return isinstance(exc, requests.ConnectionError) and type(reason).__name__ in ("NewConnectionError",
                                                                                   "ConnectTimeoutError")


class _Watchdog:
    """Shuts the connection's socket down after `limit` seconds: whatever the server does (a
    reply trickled a byte at a time defeats per-read timeouts), the blocked call then fails."""

    def __init__(self, smtp: smtplib.SMTP, limit: float):
        self.smtp, self.expired = smtp, threading.Event()
        self.timer = threading.Timer(limit, self._cut_off)
        self.timer.daemon = True

    def _cut_off(self) -> None:
        self.expired.set()
        sock = getattr(self.smtp, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def check(self) -> None:
        """After a cut, smtplib parses the partial line it read ("250 qu") as a full reply: a
        reply read once the limit has passed is no reply at all."""
        if self.expired.is_set():
            raise TimeoutError("cut off at the time limit")

    def __enter__(self) -> "_Watchdog":
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()


def _smtp_open(backend: SMTPBackend, *, limit: float) -> None:
    """Django's SMTPBackend.open() (TLS, SSL, login, timeouts as configured), within `limit`
    seconds in all: the connection object exists before it connects, so the watchdog can cut
    a greeting that never ends."""
    params = {"local_hostname": DNS_NAME.get_fqdn(), "timeout": backend.timeout or limit}
    if backend.use_ssl:
        params["context"] = backend.ssl_context
    smtp = backend.connection_class(**params)  # no host: nothing happens yet
    with _Watchdog(smtp, limit) as watchdog:
        try:
            smtp.connect(backend.host, backend.port)
            watchdog.check()
            if not backend.use_ssl and backend.use_tls:
                smtp.starttls(context=backend.ssl_context)
            if backend.username and backend.password:
                smtp.login(backend.username, backend.password)
            watchdog.check()
        except Exception as exc:
            smtp.close()
            if watchdog.expired.is_set():
                raise MailServerDown(f"no answer within {limit:g} s while connecting ({_describe(exc)})") from exc
            raise
    backend.connection = smtp


def _smtp_deliver(smtp: smtplib.SMTP, message: PreparedMessage, *, limit: float) -> SendOutcome:
    """One SMTP transaction, step by step, so a failure is known to be before or after the
    message was handed over."""
    handed_over = False
    with _Watchdog(smtp, limit) as watchdog:
        try:
            if smtp.sock is not None:
                smtp.sock.settimeout(limit)
            smtp.ehlo_or_helo_if_needed()
            watchdog.check()
            code, text = smtp.mail(message.from_addr)
            watchdog.check()
            if code != 250:
                _reset(smtp)
                return SendOutcome(SENDER_REFUSED, _reply(code, text))
            for recipient in message.recipients:
                code, text = smtp.rcpt(recipient)
                watchdog.check()
                if code not in (250, 251):
                    _reset(smtp)
                    return SendOutcome("failed", f"recipient refused: {_reply(code, text)}", hard_bounce=code >= 500)
            code, text = smtp.docmd("DATA")
            watchdog.check()
            if code != 354:
                _reset(smtp)
                return SendOutcome("failed", f"DATA refused: {_reply(code, text)}")
            handed_over = True
            smtp.send(_dot_stuffed(message.data))
            code, text = smtp.getreply()
            watchdog.check()
            if code != 250:
                # The server had the whole message and said no: it will not deliver it.
                return SendOutcome("failed", f"message refused: {_reply(code, text)}")
            return SendOutcome("sent")
        except Exception as exc:  # disconnects, timeouts, garbage replies, our own errors
            error = _describe(exc)
            if watchdog.expired.is_set():
                error = f"no answer within the send limit of {limit:g} s ({error})"
            if handed_over:
                return SendOutcome("unknown", f"connection lost after the message was handed over: {error}")
            dropped = isinstance(exc, (smtplib.SMTPServerDisconnected, ConnectionError)) and not watchdog.expired.is_set()
            return SendOutcome(RELEASED, f"not sent, connection lost before the message: {error}", dropped=dropped)


def _reset(smtp: smtplib.SMTP) -> None:
    """Abandon the transaction so the connection can carry the next message."""
    try:
        smtp.rset()
    except (smtplib.SMTPException, OSError):
        pass
