"""Validators shared by the apps' models, forms and serializers."""

import re
import zoneinfo
from functools import cache

from django.core.exceptions import ValidationError

# C0 and C1 control characters and DEL (in a mail header they split or forge headers, in a
# terminal they move the cursor or recolour the screen), and the bidirectional overrides that
# make a name read differently from what it is.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def has_control_characters(text: str) -> bool:
    return bool(_CONTROL.search(text or ""))


def no_control_characters(value: str) -> None:
    """A one-line text (a name, a subject) must not carry line breaks, tabs, escapes or
    bidirectional overrides."""
    if has_control_characters(value):
        raise ValidationError(
            "Remove the control characters (line breaks, tabs, escape sequences) from this text.",
            code="control_characters",
        )


_INVISIBLE = re.compile(r"[\s\u200b-\u200d\u2060\ufeff]")


def postal_address_text(value: str) -> None:
    """A postal address: several lines allowed, but no other control character, and something
    visible (zero-width spaces alone are not an address)."""
    if has_control_characters((value or "").replace("\r\n", "\n").replace("\n", "")):
        raise ValidationError("Remove the control characters (tabs, escape sequences) from the address.",
                              code="control_characters")
    if value and not _INVISIBLE.sub("", value):
        raise ValidationError("The address has no visible characters.", code="invisible")


def printable(text: str) -> str:
    """`text` for a terminal or a log line: every control character shown as '?'."""
    return _CONTROL.sub("?", str(text or ""))


@cache
def _time_zones() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def time_zone_name(text: str) -> str | None:
    """The IANA name of a time zone as written ("europe/paris" → "Europe/Paris"), or None."""
    return _time_zones().get((text or "").strip().lower())


def time_zone(value: str) -> None:
    """A time zone by its IANA name (Europe/Paris, America/New_York), or nothing."""
    if value and time_zone_name(value) != value:
        raise ValidationError(f"{printable(value)[:64]!r} is not a time zone: use an IANA name such as Europe/Paris.",
                              code="time_zone")
