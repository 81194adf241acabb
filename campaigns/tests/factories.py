import factory

from campaigns.models import Campaign, MessageStep


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"Campaign {n}")
    target_niche = "B2B SaaS"
    service_key = "web_design"
    target_clients = 10
    max_emails_per_day = 20
    sender_name = "Alex"
    sender_email = "alex@agency.example"


class MessageStepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MessageStep

    campaign = factory.SubFactory(CampaignFactory)
    position = factory.Sequence(lambda n: n + 1)
    delay_days = 3
    subject_template = "Hello {{ company }}"
    body_template = "Hi {{ first_name }}, about {{ company }}."
