"""Logins: failed attempts are counted per username and client address by django-axes, which
refuses a login (even with the right password) for AXES_COOLOFF_TIME after AXES_FAILURE_LIMIT
failures. It guards the console's /login/ and the admin's /admin/login/ alike."""

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off, get_failure_limit
from django.conf import settings
from django.shortcuts import render


class LoginAttemptsBackend(AxesStandaloneBackend):
    """django-axes' check, first in AUTHENTICATION_BACKENDS. Every HTTP login passes its request;
    a call without one (the test client's login(), a shell) has no client address to count and
    is left to the next backend instead of failing."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or behind our reverse proxy (CAM_BEHIND_PROXY) the
    address the proxy appended last to X-Forwarded-For; earlier entries are the client's to forge."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if settings.CAM_BEHIND_PROXY and forwarded.strip():
        return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR")


def lockout_response(request, original_response=None, credentials=None):
    """The page a locked-out login gets (status 429): what happened and how long it lasts."""
    cool_off = get_cool_off(request)
    if cool_off:
        how_long = (f"for {int(cool_off.total_seconds() // 60)} minutes after the last attempt. "
                    "Wait, then try again, or ask an administrator to unlock it.")
    else:
        how_long = "until an administrator unlocks it."
    message = (
        f"{get_failure_limit(request, credentials)} failed logins for this username from your address: "
        f"logging in is refused, even with the right password, {how_long}"
    )
    return render(request, "403.html", {"title": "Too many failed logins", "exception": message}, status=429)
