"""A campaign's trends (the campaign page): sends, replies, bounces and qualified leads per day,
rates per step and per mailbox, credits per qualified lead, from a campaign that really sent
(aiosmtpd), heard back (the inbox reader's service on real samples) and had a reply qualified."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from campaigns.trends import campaign_trends
from leads.models import ApiUsage, Lead
from leads.services import Actor
from leads.tests.factories import LeadFactory
from outreach.inbound import message_parse
from outreach.models import InboundMessage
from outreach.replies import inbound_record_outcome, inbound_store
from outreach.sending import outreach_send_due
from outreach.tests.factories import MailboxFactory

pytestmark = pytest.mark.django_db
MAIL = Path(__file__).resolve().parents[2] / "outreach" / "tests" / "mail"


def answer(name: str, original: str, lead: Lead, now) -> InboundMessage:
    raw = (MAIL / name).read_text().replace(original, lead.attempts.get(step=1).message_id)
    return inbound_store(parsed=message_parse(raw.encode()), now=now)


def test_trends_count_what_happened_per_day_per_step_and_per_mailbox(smtp_servers, client):
    first, second = smtp_servers(), smtp_servers()
    boxes = [MailboxFactory(name="Box A", smtp_port=first.port, daily_cap=2),
             MailboxFactory(name="Box B", smtp_port=second.port, daily_cap=2)]
    campaign = CampaignFactory(max_emails_per_day=50, target_clients=10, qualification_threshold=1.0)
    for position in (1, 2):
        MessageStepFactory(campaign=campaign, position=position, delay_days=2)
    for box in boxes:
        box.campaigns.add(campaign)
    day0 = timezone.now() - timedelta(days=5)
    leads = [LeadFactory(campaign=campaign, email=f"p{i}@acme{i}.example", score=0.5, next_action_at=day0)
             for i in range(4)]
    assert outreach_send_due(campaign=campaign, now=day0, dry_run=False).sent == 4
    leads = [Lead.objects.get(pk=lead.pk) for lead in leads]

    reply = answer("gmail_reply.eml", "<177313.1@agency.example>", leads[0], day0 + timedelta(days=1))
    answer("postfix_hard_bounce.eml", "<177313.9@agency.example>", leads[1], day0 + timedelta(days=1))
    inbound_record_outcome(message=reply, outcome="interested", now=day0 + timedelta(days=1), actor=Actor("staff"))
    day3 = day0 + timedelta(days=3)
    assert outreach_send_due(campaign=campaign, now=day3, dry_run=False).sent == 2  # the follow-ups: p2 and p3
    later = Lead.objects.get(pk=leads[2].pk)
    answer_two = (MAIL / "gmail_reply.eml").read_text().replace(
        "<177313.1@agency.example>", later.attempts.get(step=2).message_id)
    inbound_store(parsed=message_parse(answer_two.encode()), now=day3 + timedelta(hours=2))
    ApiUsage.objects.create(campaign=campaign, provider="apollo", day=day0.date(), endpoint="people/match",
                            credits=7, outcome="done")

    trends = campaign_trends(campaign=campaign, now=timezone.now())

    by_day = {day["day"]: day for day in trends["days"] if any(day[name] for name in ("sent", "replies", "bounces",
                                                                                     "qualified"))}
    local = timezone.localdate
    assert by_day[local(day0)]["sent"] == 4 and by_day[local(day3)]["sent"] == 2
    assert by_day[local(day0 + timedelta(days=1))] | {"day": None} == {
        "day": None, "sent": 0, "replies": 1, "bounces": 1, "qualified": 1}
    assert by_day[local(day3)]["replies"] == 1
    assert trends["totals"] == {"sent": 6, "replies": 2, "bounces": 1, "qualified": 1}
    assert [(s["step"], s["sent"], s["replies"], s["reply_rate"], s["bounces"], s["bounce_rate"])
            for s in trends["steps"]] == [(1, 4, 1, 25.0, 1, 25.0), (2, 2, 1, 50.0, 0, 0.0)]
    # Caps of 2: each box started 2 threads; the follow-ups stayed on theirs.
    assert {m["name"]: m["threads"] for m in trends["mailboxes"]} == {"Box A": 2, "Box B": 2}
    assert sum(m["sent"] for m in trends["mailboxes"]) == 6
    assert sum(m["replies"] for m in trends["mailboxes"]) == 2
    assert (trends["credits"], trends["qualified"], trends["credits_per_qualified"]) == (7, 1, 7.0)

    client.force_login(get_user_model().objects.create_superuser("op", "op@example.org", "pw"))
    page = client.get(f"/campaigns/{campaign.pk}").content.decode()
    assert "Trends, last 30 days" in page and "7.0 lead-data credits per qualified lead" in page
    assert page.count('data-series="') == 4 and 'data-step="2"' in page
