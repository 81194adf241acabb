"""A campaign's sequence, as staff write it in the console: steps added, changed, removed and
reordered in one save. Positions are renumbered 1, 2, 3… in the order given, so a reorder never
trips the one-step-per-position constraint half-way."""

from django.db import transaction
from django.db.models import F

from campaigns.models import Campaign, MessageStep

# Where steps wait while the sequence is renumbered (positions are small numbers).
_PARKED = 10_000


@transaction.atomic
def steps_save(*, campaign: Campaign, steps: list[dict]) -> list[MessageStep]:
    """Make the campaign's sequence `steps` (each: optional "id" of an existing step, then
    "delay_days", "subject_template", "body_template"), in that order; steps left out are
    deleted. Templates are checked by the caller (the form's model validation)."""
    Campaign.objects.select_for_update().get(pk=campaign.pk)  # one editor of the sequence at a time
    existing = {step.pk: step for step in MessageStep.objects.filter(campaign=campaign)}
    keep = {data["id"] for data in steps if data.get("id") in existing}
    MessageStep.objects.filter(campaign=campaign).exclude(pk__in=keep).delete()
    MessageStep.objects.filter(pk__in=keep).update(position=F("position") + _PARKED)
    saved = []
    for position, data in enumerate(steps, start=1):
        step = existing.get(data.get("id")) or MessageStep(campaign=campaign)
        step.position = position
        step.delay_days = data["delay_days"]
        step.subject_template = data["subject_template"]
        step.body_template = data["body_template"]
        step.save()
        saved.append(step)
    return saved
