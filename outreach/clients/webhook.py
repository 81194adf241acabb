"""The outgoing event webhook (MAKE_WEBHOOK_URL, e.g. a Make.com scenario).

Best effort by design: a webhook that is down, slow or answering errors is logged and never
breaks or delays outreach by more than CAM_WEBHOOK_TIMEOUT seconds per event.
"""

import logging

import requests
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

logger = logging.getLogger(__name__)

_session = requests.Session()


def webhook_post(event: dict) -> bool:
    """POST `event` as JSON to MAKE_WEBHOOK_URL; True if it was accepted (2xx)."""
    url = settings.MAKE_WEBHOOK_URL
    if not url:
        return False
    try:
        response = _session.post(
            url,
            data=DjangoJSONEncoder().encode(event),
            headers={"Content-Type": "application/json", "User-Agent": "CAM"},
            timeout=settings.CAM_WEBHOOK_TIMEOUT,
        )
        response.raise_for_status()
    except Exception as exc:  # whatever goes wrong here must never break outreach (SPEC §4)
        logger.warning("webhook %s failed for %s: %s", url, event.get("event"), exc)
        return False
    return True
