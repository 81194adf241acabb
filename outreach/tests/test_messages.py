"""Message steps and their rendering (outreach/messages.py)."""

import pytest
from django.core.exceptions import ValidationError
from django.template import TemplateSyntaxError

from campaigns.models import MessageStep
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.tests.factories import LeadFactory
from outreach.messages import (
    TEMPLATE_VARIABLES,
    RenderError,
    campaign_steps,
    check_template,
    message_render,
)

EVERY_VARIABLE = " | ".join(f"{{{{ {name} }}}}" for name in TEMPLATE_VARIABLES)


def blank_lead(**fields):
    """A lead the source told us nothing about but its address."""
    blank = {"first_name": "", "last_name": "", "company": "", "job_title": "", "company_size": "", "industry": ""}
    return LeadFactory.build(email="someone@acme.example", **{**blank, **fields})


def blank_campaign(**fields):
    blank = {"target_niche": "", "service_key": "", "sender_name": "", "name": "Q2"}
    return CampaignFactory.build(**{**blank, **fields})


def step(subject="Hello {{ company }}", body="Hi {{ first_name }},", position=1):
    return MessageStepFactory.build(subject_template=subject, body_template=body, position=position)


def assert_no_template_leftovers(text: str) -> None:
    assert "{{" not in text and "}}" not in text
    assert "{%" not in text and "%}" not in text
    assert "Hi ," not in text


# --- rendering ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_built_in_steps_render_with_fallbacks_for_a_lead_with_no_details():
    campaign = CampaignFactory(target_niche="", service_key="", sender_name="")
    lead = blank_lead(campaign=campaign)

    messages = [message_render(s, lead, campaign) for s in campaign_steps(campaign)]

    for message in messages:
        assert_no_template_leftovers(message.subject)
        assert_no_template_leftovers(message.body)
        assert message.body.startswith("Hi there,\n")
        assert "The team" in message.body
    assert messages[0].subject == "Idea for your company"
    assert "I work with B2B teams on our services" in messages[0].body
    assert "someone in your role" in messages[0].body


def test_every_variable_has_a_value_or_a_fallback(settings):
    settings.CAM_SITE_URL = "https://cam.agency.example"

    message = message_render(step(subject=EVERY_VARIABLE, body=EVERY_VARIABLE), blank_lead(), blank_campaign())

    assert_no_template_leftovers(message.body)
    assert message.body.split(" | ") == [
        "there", "", "there", "someone@acme.example", "your company", "your role", "your industry", "",
        "B2B", "our services", "Q2", "The team", "https://cam.agency.example\n",
    ]


def test_a_whitespace_only_name_falls_back_instead_of_rendering_hi_comma():
    message = message_render(step(body="Hi {{ first_name }}, hello {{ full_name }}."), blank_lead(first_name="  \t"), blank_campaign())

    assert message.body == "Hi there, hello there.\n"


def test_the_leads_and_campaigns_values_are_rendered_when_present():
    lead = blank_lead(first_name="Maya", last_name="Chen", company="BrightLoop", job_title="Head of Marketing", industry="SaaS")
    campaign = blank_campaign(target_niche="B2B SaaS", service_key="web_design", sender_name="Alex")

    message = message_render(
        step(subject="Idea for {{ company }}", body="Hi {{ full_name }} ({{ job_title }}, {{ industry }}): {{ service }} for {{ niche }}. {{ sender_name }}"),
        lead, campaign,
    )

    assert message.subject == "Idea for BrightLoop"
    assert message.body == "Hi Maya Chen (Head of Marketing, SaaS): web design for B2B SaaS. Alex\n"


def test_all_lower_or_all_upper_case_names_are_title_cased():
    lead = blank_lead(first_name="maya", last_name="CHEN")

    message = message_render(step(body="{{ first_name }} / {{ last_name }} / {{ full_name }}"), lead, blank_campaign())

    assert message.body == "Maya / Chen / Maya Chen\n"


def test_mixed_case_names_are_left_as_written():
    lead = blank_lead(first_name="DeShawn", last_name="McDonald")

    message = message_render(step(body="{{ full_name }}"), lead, blank_campaign())

    assert message.body == "DeShawn McDonald\n"


def test_the_subject_is_one_line_of_at_most_300_characters():
    lead = blank_lead(company="Bright\nLoop")

    message = message_render(step(subject="Idea for\n{{ company }}  " + "x" * 400), lead, blank_campaign())

    assert message.subject.startswith("Idea for Bright Loop x")
    assert "\n" not in message.subject
    assert len(message.subject) == 300


def test_values_are_not_html_escaped_in_plain_text_mail():
    message = message_render(step(body="{{ company }}"), blank_lead(company="Smith & <Sons>"), blank_campaign())

    assert message.body == "Smith & <Sons>\n"


def test_a_broken_template_raises_render_error_naming_the_step():
    broken = step(body="Hi {% if first_name %}{{ first_name }}", position=2)

    with pytest.raises(RenderError, match="step 2 cannot be rendered"):
        message_render(broken, blank_lead(first_name="Maya"), blank_campaign())


def test_an_unknown_filter_raises_render_error():
    with pytest.raises(RenderError):
        message_render(step(subject="{{ company|shout }}"), blank_lead(), blank_campaign())


# --- check_template ----------------------------------------------------------------------------


def test_every_documented_variable_and_a_filter_pass_the_check():
    check_template(EVERY_VARIABLE)
    check_template('Hi {{ first_name|default:"friend" }}, {% if company %}at {{ company }}{% endif %}')
    check_template("A JSON {} or {a: 1} is not a placeholder")


def test_an_unknown_variable_is_rejected_naming_the_allowed_ones():
    with pytest.raises(TemplateSyntaxError, match=r"unknown variable \{\{ nickname \}\}; use one of: first_name,"):
        check_template("Hi {{ nickname }}")


def test_an_unknown_variable_used_through_an_attribute_is_rejected():
    with pytest.raises(TemplateSyntaxError, match="unknown variable"):
        check_template("Hi {{ lead.first_name }}")


@pytest.mark.parametrize("text", ["Hi {first_name}", "Hi { first_name }!"])
def test_a_single_brace_placeholder_is_rejected(text):
    with pytest.raises(TemplateSyntaxError, match=r"double braces"):
        check_template(text)


def test_a_syntax_error_is_rejected():
    with pytest.raises(TemplateSyntaxError):
        check_template("{% if %}")


@pytest.mark.parametrize("text", ["Hi {{ first_name },", "Hi {{ first_name"])
def test_an_unclosed_placeholder_is_rejected_instead_of_mailed_raw(text):
    # Django's lexer leaves an unterminated {{ as plain text: it would go out verbatim.
    with pytest.raises(TemplateSyntaxError):
        check_template(text)


def test_an_unknown_variable_in_a_filter_argument_is_rejected():
    # Such a template passes today and then fails to render for every lead.
    with pytest.raises(TemplateSyntaxError, match="nickname"):
        check_template("Hi {{ first_name|default:nickname }}")


def test_an_unknown_variable_in_a_tag_is_rejected():
    with pytest.raises(TemplateSyntaxError, match="nickname"):
        check_template("Hi{% if nickname %} {{ first_name }}{% endif %},")


# --- MessageStep validation --------------------------------------------------------------------


@pytest.mark.django_db
def test_a_valid_step_passes_full_clean():
    MessageStepFactory.build(campaign=CampaignFactory(), body_template=EVERY_VARIABLE).full_clean()


@pytest.mark.django_db
def test_full_clean_reports_template_errors_on_the_field_that_has_them():
    bad = MessageStepFactory.build(
        campaign=CampaignFactory(), subject_template="Idea for {{ compnay }}", body_template="Hi {first_name}"
    )

    with pytest.raises(ValidationError) as caught:
        bad.full_clean()

    errors = caught.value.message_dict
    assert set(errors) == {"subject_template", "body_template"}
    assert "unknown variable {{ compnay }}" in errors["subject_template"][0]
    assert "double braces" in errors["body_template"][0]


@pytest.mark.django_db
def test_full_clean_reports_a_template_syntax_error():
    bad = MessageStepFactory.build(campaign=CampaignFactory(), body_template="{% if first_name %}Hi")

    with pytest.raises(ValidationError) as caught:
        bad.full_clean()

    assert list(caught.value.message_dict) == ["body_template"]
    assert caught.value.message_dict["body_template"][0].startswith("Template error: ")


# --- campaign_steps ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_campaign_without_steps_gets_three_built_in_steps():
    campaign = CampaignFactory()

    steps = campaign_steps(campaign)

    assert [(s.position, s.delay_days) for s in steps] == [(1, 0), (2, 3), (3, 4)]
    assert all(s.campaign == campaign and s.pk is None for s in steps)
    assert not MessageStep.objects.exists()
    for built_in in steps:
        check_template(built_in.subject_template)
        check_template(built_in.body_template)


@pytest.mark.django_db
def test_a_campaigns_own_steps_replace_the_built_in_ones_in_position_order():
    campaign = CampaignFactory()
    second = MessageStepFactory(campaign=campaign, position=2, subject_template="Second")
    first = MessageStepFactory(campaign=campaign, position=1, subject_template="First")
    MessageStepFactory(position=1)  # another campaign's step

    assert campaign_steps(campaign) == [first, second]
