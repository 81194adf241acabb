import factory
from django.utils import timezone

from campaigns.tests.factories import CampaignFactory
from leads.models import Lead, LeadSource


class LeadSourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LeadSource

    campaign = factory.SubFactory(CampaignFactory)
    name = "CSV"
    kind = LeadSource.Kind.CSV
    settings = factory.LazyFunction(lambda: {"path": "leads.csv"})  # under CAM_IMPORT_DIR


class LeadFactory(factory.django.DjangoModelFactory):
    """An enriched, verified, due lead (score 0.8: title, size, valid email)."""

    class Meta:
        model = Lead

    campaign = factory.SubFactory(CampaignFactory)
    email = factory.Sequence(lambda n: f"lead{n}@company{n}.example")
    first_name = "Jane"
    last_name = "Doe"
    company = "Acme"
    job_title = "Head of Marketing"
    company_size = "11-50"
    industry = ""
    status = Lead.Status.ENRICHED
    email_valid = True
    score = 0.8
    enrichment = factory.LazyFunction(lambda: {"email_domain": "company.example"})
    created_at = factory.LazyFunction(timezone.now)
    next_action_at = factory.LazyAttribute(lambda lead: lead.created_at)
