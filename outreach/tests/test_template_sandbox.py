"""Message templates run in a sandbox (SPEC §6 "Input is bounded"; outreach/messages.py): only the
tags and filters a message needs, and nothing a template does makes a large message."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.template import TemplateSyntaxError

from campaigns.models import Campaign
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from cam_project.testing import superuser
from leads.tests.factories import LeadFactory
from outreach.messages import MAX_BODY_LENGTH, RenderError, check_template, message_render

# A tag outside the sandbox, as an operator (or an attacker with the admin) might write it.
REFUSED_TAGS = {
    "debug": "{% debug %}",
    "lorem": "{% lorem 1000 w %}",
    "url": "{% url 'admin:index' %}",
    "load": "{% load static %}",
    "include": '{% include "base.html" %}',
    "extends": '{% extends "base.html" %}',
    "ssi": "{% ssi '/etc/passwd' %}",
    "now": '{% now "Y" %}',
    "cycle": "{% cycle 'a' 'b' %}",
    "widthratio": "{% widthratio 1 1 100000 %}",
    "templatetag": "{% templatetag openblock %}",
    "csrf_token": "{% csrf_token %}",
    "autoescape": "{% autoescape on %}{{ company }}{% endautoescape %}",
    "filter": "{% filter upper %}{{ company }}{% endfilter %}",
    "spaceless": "{% spaceless %} {{ company }} {% endspaceless %}",
    "verbatim": "{% verbatim %}{{ company }}{% endverbatim %}",
    "regroup": "{% regroup company by x as y %}",
    "ifchanged": "{% ifchanged %}{{ company }}{% endifchanged %}",
    "block": "{% block greeting %}Hi{% endblock %}",
    "resetcycle": "{% resetcycle %}",
    "querystring": "{% querystring %}",
}

# Filters that pad, format or dump a value to any size, or are of no use in plain-text mail.
REFUSED_FILTERS = ["center:100000", "ljust:100000", "rjust:100000", 'stringformat:"0100000d"', "floatformat:1000",
                   "wordwrap:1", "linenumbers", "pprint", "filesizeformat", "date", "safe", "urlize", "random"]


def lead(**fields):
    values = {"first_name": "Maya", "last_name": "Chen", "company": "BrightLoop", "job_title": "CTO",
              "company_size": "11-50", "industry": "SaaS", "email": "maya@brightloop.example"}
    return LeadFactory.build(**{**values, **fields})


def render(body, **lead_fields):
    step = MessageStepFactory.build(subject_template="Hello", body_template=body, position=1)
    return message_render(step, lead(**lead_fields), CampaignFactory.build(sender_name="Alex")).body


# --- what a message may use ----------------------------------------------------------------------


def test_the_tags_a_message_needs_pass_the_check_and_render():
    template = (
        "{# a note #}{% comment %}for staff only{% endcomment %}"
        "{% if industry == 'SaaS' %}SaaS{% elif industry %}other{% else %}none{% endif %} "
        "{% for letter in first_name|make_list %}{{ forloop.counter }}{{ letter }}{% empty %}-{% endfor %} "
        "{% with who=first_name|default:'there' %}Hi {{ who }}{% endwith %} "
        "{% firstof last_name company %}"
    )

    check_template(template)

    assert render(template) == "SaaS 1M2a3y4a Hi Maya Chen\n"


@pytest.mark.parametrize(("expression", "expected"), [
    ('{{ job_title|default:"your role" }}', "CTO"),
    ('{{ company_size|default_if_none:"?" }}', "11-50"),
    ("{{ company|lower }}", "brightloop"),
    ("{{ company|upper }}", "BRIGHTLOOP"),
    ("{{ industry|title }}", "Saas"),
    ("{{ job_title|lower|capfirst }}", "Cto"),
    ('{{ company|cut:"Loop" }}', "Bright"),
    ("{{ company|first }}", "B"),
    ("{{ company|last }}", "p"),
    ('{{ company|make_list|join:"." }}', "B.r.i.g.h.t.L.o.o.p"),
    ("{{ company|length }}", "10"),
    ('{{ company|slice:":6" }}', "Bright"),
    ("{{ company|truncatechars:7 }}", "Bright…"),
    ('{{ "one two three"|truncatewords:2 }}', "one two …"),
    ('{{ "one two three"|wordcount }}', "3"),
    ('{{ company|yesno:"known,unknown" }}', "known"),
    ("lead{{ company|length|pluralize }}", "leads"),
    ('{{ company|add:" Inc." }}', "BrightLoop Inc."),
    ("{{ company|striptags }}", "BrightLoop"),
])
def test_each_safe_filter_passes_the_check_and_renders(expression, expected):
    check_template(expression)

    assert render(expression) == expected + "\n"


def test_names_defined_by_with_and_for_are_known_inside_their_block_only():
    check_template("{% with who=first_name %}{{ who }}{% endwith %}{% for c in company %}{{ c }}{% endfor %}")

    with pytest.raises(TemplateSyntaxError, match=r"unknown variable \{\{ who \}\}"):
        check_template("{% with who=first_name %}{% endwith %}{{ who }}")
    with pytest.raises(TemplateSyntaxError, match=r"unknown variable \{\{ c \}\}"):
        check_template("{% for c in company %}{% endfor %}{{ c }}")


def test_an_unknown_variable_in_a_branch_the_trial_render_skips_is_still_refused():
    with pytest.raises(TemplateSyntaxError, match="nickname"):
        check_template("{% if not company %}{% with who=nickname %}{{ who }}{% endwith %}{% endif %}")
    with pytest.raises(TemplateSyntaxError, match="nickname"):
        check_template("{% if not company %}{% firstof nickname first_name %}{% endif %}")


# --- what it may not ---------------------------------------------------------------------------


@pytest.mark.parametrize("tag", REFUSED_TAGS)
def test_a_tag_outside_the_sandbox_is_refused_as_an_invalid_block_tag(tag):
    with pytest.raises(TemplateSyntaxError) as refused:
        check_template(f"Hi {{{{ first_name }}}}, {REFUSED_TAGS[tag]}")

    message = str(refused.value)
    assert message.startswith(f"Invalid block tag on line 1: '{tag}'")
    assert "A message may use only these tags: if, for, with, firstof, comment." in message


@pytest.mark.parametrize("filter_", REFUSED_FILTERS)
def test_a_filter_outside_the_sandbox_is_refused(filter_):
    name = filter_.split(":")[0]

    refused = rf"^Invalid filter: '{name}'\. A message may use only these filters: default,"
    with pytest.raises(TemplateSyntaxError, match=refused):
        check_template(f"{{{{ company|{filter_} }}}}")


@pytest.mark.parametrize("tag", ["debug", "load", "include", "lorem", "url"])
def test_a_step_saved_without_the_check_is_not_rendered(tag):
    # Written to the database directly (a migration, a shell, a restored backup): never checked.
    step = MessageStepFactory.build(body_template=f"Hi {{{{ first_name }}}} {REFUSED_TAGS[tag]}", position=2)

    with pytest.raises(RenderError, match=rf"step 2 cannot be rendered: Invalid block tag on line 1: '{tag}'"):
        message_render(step, lead(), CampaignFactory.build())


@pytest.mark.django_db
def test_a_dry_run_reports_a_step_with_debug_and_shows_no_context():
    campaign = CampaignFactory()
    MessageStepFactory(campaign=campaign, position=1, body_template="Hi {{ first_name }} {% debug %}")
    LeadFactory(campaign=campaign, email="maya@brightloop.example")
    out = StringIO()

    call_command("run_cam_cycle", campaign_id=campaign.pk, json=True, stdout=out)

    result = json.loads(out.getvalue())
    assert result["outreach_sent"] == 0 and result["previews"] == []
    assert result["errors"] == [
        "maya@brightloop.example: step 1 cannot be rendered: Invalid block tag on line 1: 'debug'. "
        "A message may use only these tags: if, for, with, firstof, comment."
    ]
    assert "SECRET_KEY" not in out.getvalue() and "settings" not in out.getvalue()


def test_the_admin_refuses_a_step_with_a_tag_outside_the_sandbox(client, db):
    client.force_login(superuser())

    response = client.post("/admin/campaigns/campaign/add/", campaign_form(body="Hi {% load static %}{% static 'x' %}"))

    assert response.status_code == 200  # the form again, with the error
    step_errors = response.context["inline_admin_formsets"][0].formset.errors
    assert step_errors[0]["body_template"][0].startswith("Template error: Invalid block tag on line 1: 'load'.")
    assert not Campaign.objects.exists()


def test_the_admin_saves_a_step_within_the_sandbox(client, db):
    client.force_login(superuser())

    body = "{% if company %}Hi {{ company }}{% endif %}"

    response = client.post("/admin/campaigns/campaign/add/", campaign_form(body=body))

    assert response.status_code == 302
    assert Campaign.objects.get().steps.get().body_template == body


def test_the_admin_refuses_a_step_subject_with_a_line_break(client, db):
    client.force_login(superuser())

    forged = "Idea for {{ company }}\r\nBcc: x@y.example"

    response = client.post("/admin/campaigns/campaign/add/", campaign_form(subject=forged))

    assert response.status_code == 200
    assert response.context["inline_admin_formsets"][0].formset.errors[0] == {
        "subject_template": ["Remove the control characters (line breaks, tabs, escape sequences) from this text."],
    }
    assert not Campaign.objects.exists()


def campaign_form(*, subject="Idea for {{ company }}", body="Hi {{ first_name }}", name="Sandboxed", sender_name=""):
    """The admin's add-campaign form with one message step and no lead source."""
    return {
        "name": name, "description": "", "target_niche": "SaaS", "service_key": "seo", "target_clients": "10",
        "target_mrr": "0", "channels_enabled": '["email"]', "max_emails_per_day": "20",
        "max_attempts_per_lead": "3", "qualification_threshold": "0.7", "sender_name": sender_name,
        "sender_email": "", "lawful_basis": "legitimate_interest", "qualify_on": "score",  # the selects' defaults, as a browser sends them
        "steps-TOTAL_FORMS": "1", "steps-INITIAL_FORMS": "0", "steps-MIN_NUM_FORMS": "0", "steps-MAX_NUM_FORMS": "1000",
        "steps-0-position": "1", "steps-0-delay_days": "0", "steps-0-subject_template": subject,
        "steps-0-body_template": body,
        "lead_sources-TOTAL_FORMS": "0", "lead_sources-INITIAL_FORMS": "0", "lead_sources-MIN_NUM_FORMS": "0",
        "lead_sources-MAX_NUM_FORMS": "1000",
    }


# --- nothing makes a large message -------------------------------------------------------------


def test_a_for_loop_inside_another_is_refused():
    nested = "{% for a in company %}{% for b in company %}{{ a }}{{ b }}{% endfor %}{% endfor %}"

    with pytest.raises(TemplateSyntaxError, match="a for loop inside another for loop is not allowed"):
        check_template(nested)
    with pytest.raises(RenderError, match="a for loop inside another for loop"):
        render(nested)


def test_a_body_over_the_limit_is_a_render_error_not_a_truncated_mail():
    text = "x" * (MAX_BODY_LENGTH - 20)

    assert render(text + "{{ first_name }}") == text + "Maya\n"  # 19,984 characters: sent whole
    with pytest.raises(RenderError, match=r"step 1 renders to 20,\d{3} characters; a message may have 20,000"):
        render(text + "{{ company }}", company="C" * 200)


def test_a_template_longer_than_the_limit_is_refused():
    with pytest.raises(TemplateSyntaxError, match="at most 20,000 characters"):
        check_template("x" * (MAX_BODY_LENGTH + 1))


def test_doubling_a_value_with_nested_with_stops_at_the_value_limit():
    doubling = "".join(f"{{% with v{i + 1}=v{i}|add:v{i} %}}" for i in range(40)).replace("v0", "company")
    template = doubling + "{{ v40 }}" + "{% endwith %}" * 40  # 2^40 times the company's name

    with pytest.raises(RenderError, match=r"\|add makes a value longer than 2,000 characters"):
        render(template)
    with pytest.raises(TemplateSyntaxError, match=r"\|add makes a value longer than 2,000 characters"):
        check_template(template)


def test_a_join_that_would_multiply_a_value_is_refused_before_it_is_built():
    squared = ("{% with v=company|make_list|join:company %}{% with w=v|make_list|join:v %}{{ w }}"
               "{% endwith %}{% endwith %}")

    with pytest.raises(RenderError, match=r"\|join would make a value longer than 2,000 characters"):
        render(squared, company="C" * 200)


def test_a_loop_that_would_render_megabytes_stops_at_the_body_limit():
    # 600 letters × 500 values of 600 characters: 180 MB if nothing stopped it while it runs.
    loop = ("{% with v=company|add:company|add:company %}{% for c in v|make_list %}" + "{{ v }}" * 500
            + "{% endfor %}{% endwith %}")

    with pytest.raises(RenderError, match="a for loop makes the message longer than 20,000 characters"):
        render(loop, company="C" * 200)


def test_a_template_that_fits_short_names_but_not_long_ones_is_refused_when_saved():
    many = "{{ company }} " * 150  # 150 × 200 characters for a lead with a long company name

    with pytest.raises(TemplateSyntaxError, match=r"too long for a lead with long details: 30,\d{3} characters"):
        check_template(many)


def test_tags_nested_too_deeply_are_refused_not_a_crash():
    deep = "{% if company %}" * 400 + "x" + "{% endif %}" * 400

    with pytest.raises(TemplateSyntaxError, match="nested too deeply"):
        check_template(deep)
    with pytest.raises(RenderError):
        render(deep)
