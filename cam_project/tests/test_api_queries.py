"""List endpoints run a fixed number of SQL queries, whatever the number of rows."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from campaigns.tests.factories import CampaignFactory
from leads.models import Lead
from leads.tests.factories import LeadFactory
from outreach.tests.factories import OutreachAttemptFactory, SuppressionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(django_user_model):
    api = APIClient()
    api.force_authenticate(django_user_model.objects.create_superuser("q", "q@example.org", "pw"))
    return api


def queries(client, url) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(captured)


def grow_campaigns(count):
    for _ in range(count):
        campaign = CampaignFactory()
        LeadFactory.create_batch(3, campaign=campaign)
        LeadFactory(campaign=campaign, status=Lead.Status.QUALIFIED)


def test_the_campaign_list_costs_the_same_for_2_or_40_campaigns(client):
    grow_campaigns(2)
    few = queries(client, "/api/cam/campaigns")
    grow_campaigns(38)
    many = queries(client, "/api/cam/campaigns")
    assert few == many
    assert len(client.get("/api/cam/campaigns").json()) == 40


def test_a_campaigns_detail_costs_the_same_for_5_or_200_leads(client):
    campaign = CampaignFactory()
    LeadFactory.create_batch(5, campaign=campaign)
    few = queries(client, f"/api/cam/campaigns/{campaign.pk}")
    LeadFactory.create_batch(195, campaign=campaign)
    for lead in LeadFactory.create_batch(20, campaign=campaign):
        OutreachAttemptFactory(lead=lead)
    assert queries(client, f"/api/cam/campaigns/{campaign.pk}") == few


@pytest.mark.parametrize("per_page", [5, 60])
def test_a_page_of_leads_costs_the_same_whatever_its_size(client, per_page):
    campaign = CampaignFactory()
    LeadFactory.create_batch(3, campaign=campaign)
    small = queries(client, f"/api/cam/campaigns/{campaign.pk}/leads?page_size={per_page}")
    LeadFactory.create_batch(100, campaign=campaign)
    assert queries(client, f"/api/cam/campaigns/{campaign.pk}/leads?page_size={per_page}") == small


def test_a_page_of_attempts_costs_the_same_for_3_or_80_attempts(client):
    campaign = CampaignFactory()
    for _ in range(3):
        OutreachAttemptFactory(lead=LeadFactory(campaign=campaign))
    few = queries(client, f"/api/cam/campaigns/{campaign.pk}/attempts")
    for _ in range(77):
        OutreachAttemptFactory(lead=LeadFactory(campaign=campaign))
    assert queries(client, f"/api/cam/campaigns/{campaign.pk}/attempts") == few
    assert client.get(f"/api/cam/campaigns/{campaign.pk}/attempts").json()["count"] == 80


def test_the_suppression_list_costs_the_same_for_2_or_90_addresses(client):
    SuppressionFactory.create_batch(2)
    few = queries(client, "/api/cam/suppressions")
    SuppressionFactory.create_batch(88)
    assert queries(client, "/api/cam/suppressions") == few
