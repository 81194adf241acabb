"""The global suppression list: addresses no campaign may email."""

from datetime import datetime

from django.db import transaction

from leads.models import Lead, LeadEvent
from leads.rows import email_normalise
from leads.services import FINAL_STATUSES, Actor
from outreach.models import Suppression

SUPPRESSED_REASON = "address is on the suppression list"


@transaction.atomic
def suppression_add(
    *, email: str, reason: str = Suppression.Reason.MANUAL, note: str = "", now: datetime, actor: Actor | None = None
) -> tuple[Suppression, bool]:
    """Suppress an address everywhere: no campaign adds it again, and its leads stop at once
    (each stop is an event of the lead). Returns (suppression, created)."""
    email = email_normalise(email)
    actor = actor or Actor("suppression list")
    suppression, created = Suppression.objects.get_or_create(
        email=email, defaults={"reason": reason, "note": note, "created_at": now}
    )
    # Locked, so a cycle cannot make one of them due again between this read and the write.
    stopping = list(
        Lead.objects.select_for_update()
        .filter(email=email, next_action_at__isnull=False)
        .exclude(status__in=FINAL_STATUSES)
        .order_by("pk")
        .values_list("pk", "status")
    )
    if stopping:
        Lead.objects.filter(pk__in=[pk for pk, _ in stopping]).update(
            next_action_at=None, stopped_reason=SUPPRESSED_REASON, updated_at=now
        )
        label = f"{SUPPRESSED_REASON} ({suppression.reason})"
        LeadEvent.objects.bulk_create(
            LeadEvent(lead_id=pk, kind=LeadEvent.Kind.STOPPED, from_status=status, to_status=status, reason=label,
                      actor=actor.label, user=actor.user, created_at=now)
            for pk, status in stopping
        )
    return suppression, created


def suppression_remove(*, suppression: Suppression) -> None:
    """Campaigns may add the address again; leads it stopped stay stopped until staff resume them."""
    suppression.delete()


def suppressed_emails(emails: list[str]) -> set[str]:
    return set(Suppression.objects.filter(email__in=emails).values_list("email", flat=True))
