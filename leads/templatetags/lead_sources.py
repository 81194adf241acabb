"""Lead sources as the console shows them."""

from django import template
from django.utils import timezone

from leads.apollo_source import apollo_progress

register = template.Library()


@register.filter
def search_progress(source) -> str:
    """Where an Apollo source's search stands ("page 3", "exhausted", …)."""
    return apollo_progress(source, timezone.now())
