import factory

from leads.tests.factories import LeadFactory
from outreach.models import OutreachAttempt, Suppression


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
