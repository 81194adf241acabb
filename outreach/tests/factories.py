from datetime import time

import factory

from leads.tests.factories import LeadFactory
from outreach.models import Mailbox, OutreachAttempt, Suppression


class OutreachAttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OutreachAttempt

    lead = factory.SubFactory(LeadFactory)
    campaign = factory.LazyAttribute(lambda attempt: attempt.lead.campaign)
    step = 1
    status = OutreachAttempt.Status.SENT
    subject = "Hello"


class SuppressionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Suppression

    email = factory.Sequence(lambda n: f"gone{n}@example.org")
    reason = Suppression.Reason.UNSUBSCRIBED


class MailboxFactory(factory.django.DjangoModelFactory):
    """An SMTP mailbox open all day every day, with no gap: tests set the limits they test."""

    class Meta:
        model = Mailbox

    name = factory.Sequence(lambda n: f"Mailbox {n}")
    from_name = "Alex"
    from_email = factory.Sequence(lambda n: f"alex{n}@agency.example")
    smtp_host = "127.0.0.1"
    smtp_port = 25
    smtp_security = Mailbox.Security.NONE
    daily_cap = 30
    min_gap_seconds = 0
    gap_jitter_seconds = 0
    window_days = factory.LazyFunction(lambda: list(range(7)))
    window_start = factory.LazyFunction(lambda: time(0, 0))
    window_end = factory.LazyFunction(lambda: time(0, 0))
    timezone = "UTC"
