from datetime import timedelta

import pytest

from leads.models import TAG_DO_NOT_CONTACT, TAG_HOT, Lead
from leads.services import (
    InvalidTransition,
    followup_delay,
    lead_apply_enrichment,
    lead_check_stop,
    lead_mark_replied,
    lead_record_send,
    lead_tag_add,
    lead_transition,
)
from leads.tests.factories import LeadFactory

pytestmark = pytest.mark.django_db
Status = Lead.Status


def test_a_new_lead_becomes_enriched_once_enrichment_data_exists(now):
    lead = LeadFactory(status=Status.NEW, enrichment={}, score=0, email_valid=None)
    lead_apply_enrichment(lead=lead, found=[{"data": {"seniority": "vp"}}], verification={"valid": True}, now=now)
    assert lead.status == Status.ENRICHED
    assert lead.score == 0.8  # base + title + size + valid email


def test_a_lead_without_enrichment_data_stays_new(now):
    lead = LeadFactory(status=Status.NEW, enrichment={})
    lead_apply_enrichment(lead=lead, found=[], verification={"valid": True}, now=now)
    assert lead.status == Status.NEW


def test_a_lead_whose_email_fails_verification_gets_no_outreach(now):
    lead = LeadFactory(status=Status.NEW, enrichment={}, next_action_at=now)
    lead_apply_enrichment(
        lead=lead, found=[{"data": {"x": 1}}], verification={"valid": False, "reason": "no MX"}, now=now
    )
    assert lead.next_action_at is None
    assert "no MX" in lead.stopped_reason
    assert lead.score == 0.6  # no +0.2 for the email


@pytest.mark.parametrize(
    ("score", "hot", "expected"),
    [
        (0.7, False, Status.CONTACTED),  # the threshold itself is not "above"
        (0.7001, False, Status.QUALIFIED),
        (0.3, True, Status.QUALIFIED),  # hot wins whatever the score
        (0.95, False, Status.QUALIFIED),
    ],
)
def test_a_successful_send_contacts_or_qualifies_by_score_and_hot_tag(now, score, hot, expected):
    lead = LeadFactory(score=score, tags=[TAG_HOT] if hot else [])
    lead_record_send(lead=lead, campaign=lead.campaign, now=now, next_delay_days=3)
    assert lead.status == expected
    assert lead.attempt_count == 1
    assert lead.first_contacted_at == now


def test_the_threshold_is_the_campaigns(now):
    lead = LeadFactory(score=0.8, campaign__qualification_threshold=0.9)
    lead_record_send(lead=lead, campaign=lead.campaign, now=now, next_delay_days=3)
    assert lead.status == Status.CONTACTED


def test_a_qualified_lead_gets_no_follow_up(now):
    lead = LeadFactory(score=0.95)
    lead_record_send(lead=lead, campaign=lead.campaign, now=now, next_delay_days=3)
    assert lead.status == Status.QUALIFIED
    assert lead.next_action_at is None


def test_the_follow_up_comes_sooner_for_a_higher_score():
    delays = [followup_delay(4, score) for score in (0.0, 0.3, 0.65, 0.8, 1.0)]
    assert delays == sorted(delays, reverse=True)
    assert delays[0] == timedelta(days=4)
    assert delays[-1] == timedelta(days=2)


def test_after_a_send_the_next_action_moves_on_by_the_next_steps_delay(now):
    lead = LeadFactory(score=0.5)
    lead_record_send(lead=lead, campaign=lead.campaign, now=now, next_delay_days=4)
    assert lead.next_action_at == now + followup_delay(4, 0.5)


def test_a_do_not_contact_lead_is_stopped_without_becoming_lost(now):
    lead = LeadFactory(tags=[TAG_DO_NOT_CONTACT])
    reason = lead_check_stop(lead=lead, campaign=lead.campaign, now=now, suppressed=False, steps=3)
    assert reason == "tagged do_not_contact"
    assert lead.status == Status.ENRICHED
    assert lead.next_action_at is None


def test_a_suppressed_lead_is_stopped(now):
    lead = LeadFactory()
    assert lead_check_stop(lead=lead, campaign=lead.campaign, now=now, suppressed=True, steps=3)
    assert lead.next_action_at is None


def test_follow_ups_stop_thirty_days_after_first_contact(now):
    almost = LeadFactory(status=Status.CONTACTED, attempt_count=1, first_contacted_at=now - timedelta(days=30) + timedelta(minutes=1))
    assert lead_check_stop(lead=almost, campaign=almost.campaign, now=now, suppressed=False, steps=3) is None

    expired = LeadFactory(status=Status.CONTACTED, attempt_count=1, first_contacted_at=now - timedelta(days=30))
    reason = lead_check_stop(lead=expired, campaign=expired.campaign, now=now, suppressed=False, steps=3)
    assert reason == "no reply 30 days after first contact"
    assert expired.status == Status.LOST


def test_a_lead_that_used_all_its_attempts_becomes_lost(now):
    lead = LeadFactory(status=Status.CONTACTED, attempt_count=3, first_contacted_at=now - timedelta(days=10),
                       campaign__max_attempts_per_lead=3)
    assert lead_check_stop(lead=lead, campaign=lead.campaign, now=now, suppressed=False, steps=5)
    assert lead.status == Status.LOST

    fewer_steps = LeadFactory(status=Status.CONTACTED, attempt_count=2, first_contacted_at=now,
                              campaign__max_attempts_per_lead=3)
    assert lead_check_stop(lead=fewer_steps, campaign=fewer_steps.campaign, now=now, suppressed=False, steps=2)
    assert fewer_steps.status == Status.LOST

    one_more = LeadFactory(status=Status.CONTACTED, attempt_count=2, first_contacted_at=now,
                           campaign__max_attempts_per_lead=3)
    assert lead_check_stop(lead=one_more, campaign=one_more.campaign, now=now, suppressed=False, steps=3) is None


def test_a_reply_stops_follow_ups(now):
    lead = LeadFactory(status=Status.CONTACTED, next_action_at=now)
    lead_mark_replied(lead=lead, now=now)
    lead.refresh_from_db()
    assert (lead.status, lead.next_action_at, lead.replied_at) == (Status.REPLIED, None, now)


def test_a_reply_arriving_while_a_send_was_in_flight_is_kept(now):
    lead = LeadFactory(status=Status.REPLIED, replied_at=now, next_action_at=None, score=0.3)
    lead_record_send(lead=lead, campaign=lead.campaign, now=now, next_delay_days=3)
    assert lead.status == Status.REPLIED
    assert lead.next_action_at is None
    assert lead.attempt_count == 1


def test_finished_leads_cannot_go_back_to_new_or_contacted():
    lead = Lead(status=Status.QUALIFIED)
    with pytest.raises(InvalidTransition):
        lead_transition(lead, Status.CONTACTED)
    with pytest.raises(InvalidTransition):
        lead_transition(Lead(status=Status.ENRICHED), Status.NEW)


def test_tagging_do_not_contact_stops_outreach_at_once(now):
    lead = LeadFactory(next_action_at=now)
    lead_tag_add(lead=lead, tag="Do_Not_Contact")
    lead.refresh_from_db()
    assert lead.tags == [TAG_DO_NOT_CONTACT]
    assert lead.next_action_at is None
