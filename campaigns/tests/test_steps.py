"""The console's sequence editor: steps written, reordered and removed in one save through
steps_save, their templates checked by the same sandbox as sending, the variables listed beside."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from campaigns.models import MessageStep
from campaigns.tests.factories import CampaignFactory, MessageStepFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.org", "pw"))
    return client


def formset_data(forms: list[dict], initial: int) -> dict:
    data = {"steps-TOTAL_FORMS": str(len(forms)), "steps-INITIAL_FORMS": str(initial),
            "steps-MIN_NUM_FORMS": "0", "steps-MAX_NUM_FORMS": "20"}
    for i, form in enumerate(forms):
        for name, value in form.items():
            data[f"steps-{i}-{name}"] = value
    return data


def sequence(campaign) -> list[tuple]:
    return list(MessageStep.objects.filter(campaign=campaign).order_by("position")
                .values_list("position", "subject_template", "delay_days"))


def test_an_operator_writes_reorders_and_removes_steps(operator):
    campaign = CampaignFactory()
    page = operator.get(f"/campaigns/{campaign.pk}/steps").content.decode()
    assert "New step" in page and "<code>first_name</code>" in page and "your company" in page

    new = {"order": "1", "delay_days": "0", "subject_template": "Idea for {{ company }}",
           "body_template": "Hi {{ first_name }}, …"}
    assert operator.post(f"/campaigns/{campaign.pk}/steps", formset_data([new], 0)).status_code == 302
    first = MessageStep.objects.get(campaign=campaign)
    follow = {"order": "2", "delay_days": "3", "subject_template": "Re: Idea for {{ company }}",
              "body_template": "Just checking, {{ first_name }}."}
    existing = {"id": str(first.pk), "order": "1", "delay_days": "0", "subject_template": first.subject_template,
                "body_template": first.body_template}
    operator.post(f"/campaigns/{campaign.pk}/steps", formset_data([existing, follow], 1))
    assert sequence(campaign) == [(1, "Idea for {{ company }}", 0), (2, "Re: Idea for {{ company }}", 3)]

    # Swap them: the follow-up first (a reorder never trips the unique position).
    second = MessageStep.objects.get(campaign=campaign, position=2)
    swapped = [{**existing, "order": "2"},
               {"id": str(second.pk), "order": "1", "delay_days": "3", "subject_template": second.subject_template,
                "body_template": second.body_template}]
    operator.post(f"/campaigns/{campaign.pk}/steps", formset_data(swapped, 2))
    assert [row[1] for row in sequence(campaign)] == ["Re: Idea for {{ company }}", "Idea for {{ company }}"]
    assert MessageStep.objects.get(pk=first.pk).position == 2  # the same rows, renumbered

    removed = [{**swapped[0], "DELETE": "on"}, {**swapped[1]}]
    operator.post(f"/campaigns/{campaign.pk}/steps", formset_data(removed, 2))
    assert sequence(campaign) == [(1, "Re: Idea for {{ company }}", 3)]


def test_a_template_error_is_shown_beside_its_field_and_nothing_is_saved(operator):
    campaign = CampaignFactory()
    step = MessageStepFactory(campaign=campaign, position=1, subject_template="Hello")
    bad = [{"id": str(step.pk), "order": "1", "delay_days": "0", "subject_template": "Hi {{ frist_name }}",
            "body_template": "{% load static %}"}]
    response = operator.post(f"/campaigns/{campaign.pk}/steps", formset_data(bad, 1))
    assert response.status_code == 200
    page = response.content.decode()
    assert "unknown variable {{ frist_name }}" in page and "Template error" in page
    assert sequence(campaign) == [(1, "Hello", step.delay_days)]


def test_the_sequence_editor_needs_the_change_permission(client):
    campaign = CampaignFactory()
    viewer = get_user_model().objects.create_user("viewer", "v@example.org", "pw")
    viewer.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client.force_login(viewer)
    assert client.get(f"/campaigns/{campaign.pk}/steps").status_code == 403
    assert client.post(f"/campaigns/{campaign.pk}/steps", formset_data([], 0)).status_code == 403


def test_the_preview_renders_the_step_for_a_lead_with_the_sender_and_footer_or_says_what_is_wrong(operator):
    from leads.tests.factories import LeadFactory

    campaign = CampaignFactory(sender_name="Alex", sender_email="alex@agency.example",
                               postal_address="Agency Ltd, 1 Road, Paris")
    maya = LeadFactory(campaign=campaign, email="maya@brightloop.example", first_name="Maya", company="BrightLoop")
    url = f"/campaigns/{campaign.pk}/steps/preview"
    step = {"subject_template": "Idea for {{ company }}", "body_template": "Hi {{ first_name }},\nshort note."}

    shown = operator.post(url, {**step, "lead": str(maya.pk)}).json()
    assert (shown["subject"], shown["from"], shown["to"], shown["errors"]) == (
        "Idea for BrightLoop", "Alex <alex@agency.example>", "maya@brightloop.example", {})
    assert shown["body"].startswith("Hi Maya,\nshort note.")
    assert "Agency Ltd, 1 Road, Paris" in shown["body"] and "/u/" in shown["body"]  # the footer, as sent

    bare = operator.post(url, {**step, "lead": ""}).json()
    assert bare["subject"] == "Idea for your company" and bare["body"].startswith("Hi there,")

    broken = operator.post(url, {"subject_template": "Hi {{ frist_name }}", "body_template": "{% load x %}"}).json()
    assert set(broken["errors"]) == {"subject_template", "body_template"} and broken["body"] == ""
    other = LeadFactory()  # another campaign's lead is not previewed: the fallbacks are
    assert operator.post(url, {**step, "lead": str(other.pk)}).json()["to"] == "someone@example.com"


def test_a_test_send_says_why_it_did_not_go_and_never_mails_a_lead(client, smtp_servers):
    from conftest import free_port
    from leads.tests.factories import LeadFactory
    from outreach.models import OutreachAttempt
    from outreach.tests.factories import MailboxFactory

    smtp = smtp_servers()
    campaign = CampaignFactory(postal_address="Agency Ltd, 1 Road, Paris")
    box = MailboxFactory(smtp_port=smtp.port)
    box.campaigns.add(campaign)
    lead = LeadFactory(campaign=campaign, email="maya@brightloop.example", first_name="Maya")
    user = get_user_model().objects.create_superuser("op", "", "pw")
    client.force_login(user)
    url = f"/campaigns/{campaign.pk}/steps/test"
    step = {"subject_template": "Hi {{ first_name }}", "body_template": "Body", "lead": str(lead.pk)}

    no_address = client.post(url, step)
    assert no_address.status_code == 400 and "no email address" in no_address.json()["detail"]
    user.email = "op@agency.example"
    user.save()
    broken = client.post(url, {**step, "body_template": "{{ nope }}"})
    assert broken.status_code == 400 and "unknown variable" in broken.json()["detail"]
    sent = client.post(url, step)
    assert sent.json() == {"sent": True, "detail": f"Test sent to op@agency.example through {box.name}."}
    assert [(m["To"], m["Subject"]) for m in smtp.messages] == [("op@agency.example", "[Test] Hi Maya")]
    box.smtp_port = free_port()  # nothing listens there
    box.save()
    down = client.post(url, step)
    assert down.status_code == 400 and down.json()["detail"].startswith("Not sent:")
    assert not OutreachAttempt.objects.exists() and len(smtp.messages) == 1
