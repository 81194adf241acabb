"""What the lead-data providers' clients share (SPEC §10): one JSON call with time limits, and
its failures sorted into what the cycle does about them.

A provider's failure never raises anything but ProviderError: the cycle reports it and goes on.
"""

import json
from dataclasses import dataclass

import requests
from django.conf import settings

# Longest wait a provider's Retry-After is taken at its word for; past it, the next cycle.
MAX_RETRY_AFTER = 3600


class ProviderError(Exception):
    """A call that did not give a usable answer. `stop_source`: nothing more from this provider
    this cycle (a wrong key, no credits left, rate limited); otherwise only this call failed."""

    stop_source = False

    def __init__(self, provider: str, message: str, *, status: int | None = None):
        super().__init__(f"{provider}: {message}")
        self.provider, self.status = provider, status


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
    """Malformed JSON, or JSON not in the documented shape."""


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


def call(provider: Provider, session: requests.Session, method: str, path: str, *, body: dict | None = None,
         params: dict | None = None) -> dict:
    """One JSON call; the decoded object, or a ProviderError saying what went wrong (never the
    key, never the response's raw bytes beyond a short excerpt)."""
    timeout = settings.CAM_PROVIDER_TIMEOUT
    try:
        response = session.request(method, provider.base_url + path, json=body, params=params,
                                   headers={"Accept": "application/json", "User-Agent": "CAM", **provider.headers},
                                   timeout=(timeout, timeout))
    except requests.Timeout:
        raise Unavailable(provider.name, f"no answer within {timeout:g} s") from None
    except requests.RequestException as exc:
        raise Unavailable(provider.name, f"cannot be reached ({type(exc).__name__})") from None
    status = response.status_code
    if status == 401:
        raise AuthFailed(provider.name, "the API key was refused (401): check it", status=status)
    if status == 402 or status == 403:
        raise OutOfCredits(provider.name, f"refused for the plan or credits ({status}): {_excerpt(response)}",
                           status=status)
    if status == 429:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        raise RateLimited(provider.name, "rate limited (429)" + (f": retry after {wait} s" if wait is not None else ""),
                          status=status, retry_after=wait)
    if status >= 500:
        raise Unavailable(provider.name, f"server error {status}", status=status)
    if status >= 400:
        raise BadAnswer(provider.name, f"request refused ({status}): {_excerpt(response)}", status=status)
    try:
        data = response.json()
    except (ValueError, json.JSONDecodeError):
        raise BadAnswer(provider.name, f"the answer is not JSON ({status})", status=status) from None
    if not isinstance(data, dict):
        raise BadAnswer(provider.name, "the answer is not a JSON object", status=status)
    return data


def _excerpt(response: requests.Response) -> str:
    try:
        data = response.json()
        text = data.get("error") or data.get("message") or data.get("reason") if isinstance(data, dict) else None
    except ValueError:
        text = None
    return str(text or response.reason or "")[:200]
