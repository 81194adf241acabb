"""What the lead-data providers' clients share (SPEC §10): one JSON call with time limits, and
its failures sorted into what the cycle does about them.

A provider's failure never raises anything but ProviderError: the cycle reports it and goes on.
"""

import json
import time
from dataclasses import dataclass

import requests
import urllib3
from django.conf import settings

# Longest wait a provider's Retry-After is taken at its word for; past it, the next cycle.
MAX_RETRY_AFTER = 3600


class ProviderError(Exception):
    """A call that did not give a usable answer. `stop_source`: nothing more from this provider
    this cycle (a wrong key, no credits left, rate limited); otherwise only this call failed.
    `maybe_charged`: the provider may have taken the request (and its credits) although no
    usable answer came back; False when it surely did not (refused, never reached)."""

    stop_source = False

    def __init__(self, provider: str, message: str, *, status: int | None = None, maybe_charged: bool = False):
        super().__init__(redact(f"{provider}: {message}"))
        self.provider, self.status, self.maybe_charged = provider, status, maybe_charged


class AuthFailed(ProviderError):
    stop_source = True


class OutOfCredits(ProviderError):
    stop_source = True


class RateLimited(ProviderError):
    stop_source = True

    def __init__(self, provider: str, message: str, *, status: int | None = None, retry_after: int | None = None):
        super().__init__(provider, message, status=status)
        self.retry_after = retry_after


class Unavailable(ProviderError):
    """5xx, a timeout, a connection refused: try again next cycle."""


class BadAnswer(ProviderError):
    """Malformed JSON, or JSON not in the documented shape. An answer with a success status may
    have been charged for."""

    def __init__(self, provider: str, message: str, *, status: int | None = None, maybe_charged: bool | None = None):
        if maybe_charged is None:
            maybe_charged = status is None or status < 300
        super().__init__(provider, message, status=status, maybe_charged=maybe_charged)


def retry_after_seconds(value: str | None) -> int | None:
    """Retry-After in seconds (the HTTP-date form is rare for APIs: read as unknown)."""
    try:
        return min(max(int(str(value).strip()), 0), MAX_RETRY_AFTER) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str
    headers: dict


# The most an answer may weigh, and how deep its JSON may nest (the providers' answers are a few
# levels deep; a deeper one is not theirs, and would overflow the recursion of what reads it).
MAX_ANSWER_BYTES = 20 * 1024 * 1024
MAX_DEPTH = 40
_CHUNK = 64 * 1024


def call(provider: Provider, session: requests.Session, method: str, path: str, *, body: dict | None = None,
         params: dict | None = None) -> dict:
    """One JSON call; the decoded object, or a ProviderError saying what went wrong (never the
    key, never the response's raw bytes beyond a short excerpt).

    The whole call, answer included, takes at most twice CAM_PROVIDER_TIMEOUT (a server
    trickling its answer is cut off), the answer at most MAX_ANSWER_BYTES. Redirects are not
    followed: the key goes to the configured host only. NUL characters and CAM's own keys are
    taken out of every text of the answer."""
    timeout = settings.CAM_PROVIDER_TIMEOUT
    deadline = time.monotonic() + 2 * timeout
    try:
        response = session.request(method, provider.base_url + path, json=body, params=params,
                                   headers={"Accept": "application/json", "User-Agent": "CAM", **provider.headers},
                                   timeout=(timeout, timeout), allow_redirects=False, stream=True)
    except requests.ConnectTimeout:
        raise Unavailable(provider.name, f"cannot be reached within {timeout:g} s") from None
    except requests.Timeout:
        raise Unavailable(provider.name, f"no answer within {timeout:g} s", maybe_charged=True) from None
    except requests.RequestException as exc:
        raise Unavailable(provider.name, f"cannot be reached ({type(exc).__name__})",
                          maybe_charged=not _never_sent(exc)) from None
    except UnicodeError:  # http.client sends header values as Latin-1
        raise AuthFailed(provider.name, "the API key has characters a request header cannot carry: check it") from None
    with response:
        status = response.status_code
        raw = _read(provider, response, deadline, timeout, MAX_ANSWER_BYTES if status < 300 else _CHUNK)
    if 300 <= status < 400:
        raise BadAnswer(provider.name, f"redirected ({status}): not followed, the key stays with the configured host",
                        status=status)
    if status == 401:
        raise AuthFailed(provider.name, "the API key was refused (401): check it", status=status)
    if status == 402 or status == 403:
        raise OutOfCredits(provider.name, f"refused for the plan or credits ({status}): {_excerpt(raw)}",
                           status=status)
    if status == 429:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        raise RateLimited(provider.name, "rate limited (429)" + (f": retry after {wait} s" if wait is not None else ""),
                          status=status, retry_after=wait)
    if status >= 500:
        raise Unavailable(provider.name, f"server error {status}", status=status)
    if status >= 400:
        raise BadAnswer(provider.name, f"request refused ({status}): {_excerpt(raw)}", status=status)
    data = _decode(raw)
    if data is None:
        raise BadAnswer(provider.name, f"the answer is not JSON ({status})", status=status)
    if not isinstance(data, dict):
        raise BadAnswer(provider.name, "the answer is not a JSON object", status=status)
    try:
        return _scrub(data)
    except _TooDeep:
        raise BadAnswer(provider.name, f"the answer nests deeper than {MAX_DEPTH} levels", status=status) from None


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether the request surely never reached the provider (no connection was made)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _read(provider: Provider, response: requests.Response, deadline: float, timeout: float, limit: int) -> bytes:
    """The answer's body, read as it comes, within the call's deadline and `limit` bytes."""
    body = bytearray()
    try:
        while chunk := response.raw.read1(_CHUNK, decode_content=True):
            body += chunk
            if len(body) > limit:
                if limit < MAX_ANSWER_BYTES:  # an error's excerpt: the start is enough
                    return bytes(body[:limit])
                raise BadAnswer(provider.name, f"the answer is larger than {limit // (1024 * 1024)} MB",
                                status=response.status_code)
            if time.monotonic() > deadline:
                raise Unavailable(provider.name, f"the answer did not arrive within {2 * timeout:g} s",
                                  maybe_charged=True)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise Unavailable(provider.name, f"the answer was cut off or late ({type(exc).__name__})",
                          maybe_charged=True) from None
    return bytes(body)


def _decode(raw: bytes):
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested past what the parser takes
        return None


class _TooDeep(Exception):
    pass


def text_of(value) -> str:
    """A value of a provider's answer as text: "" for nothing, a list or an object."""
    return "" if value is None or isinstance(value, (dict, list)) else str(value).strip()


def redact(text: str) -> str:
    """`text` without CAM's own API keys (a provider may echo one back in an error)."""
    for key in (settings.APOLLO_API_KEY, settings.DROPCONTACT_API_KEY):
        if key and len(key) >= 4:
            text = text.replace(key, "[API key]")
    return text


def _clean(text: str) -> str:
    """A text of a provider's answer without NUL characters (PostgreSQL stores none) or CAM's keys."""
    return redact(text.replace("\x00", "")) if text else text


def _scrub(data):
    """Take NUL characters (PostgreSQL stores none) and CAM's keys out of every text of a
    decoded answer, in place and without recursion; _TooDeep past MAX_DEPTH levels."""

    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _TooDeep()
        if isinstance(node, dict):
            items = list(node.items())
            node.clear()
            for key, value in items:
                node[_clean(key)] = _clean(value) if isinstance(value, str) else value
                if isinstance(value, (dict, list)):
                    stack.append((value, depth + 1))
        else:
            for index, value in enumerate(node):
                if isinstance(value, str):
                    node[index] = _clean(value)
                elif isinstance(value, (dict, list)):
                    stack.append((value, depth + 1))
    return data


def _excerpt(raw: bytes) -> str:
    data = _decode(raw)
    text = (data.get("error") or data.get("message") or data.get("reason")) if isinstance(data, dict) else None
    if not isinstance(text, str):
        return ""
    return _clean(text)[:200]
