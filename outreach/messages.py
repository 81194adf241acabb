"""Message steps and their rendering for one lead.

Templates use Django's template language with autoescaping off (plain-text mail). Every
variable in TEMPLATE_VARIABLES always has a value: a lead's missing field renders its fallback,
so no mail goes out as "Hi ," or with a raw placeholder. Unknown variables are refused when a
step is saved (`check_template`).
"""

import re
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.template import Context, Engine, Template, TemplateSyntaxError
from django.template.base import TextNode, VariableNode

from campaigns.models import Campaign, MessageStep
from leads.models import Lead

# variable → fallback when the lead (or campaign) has no value for it.
TEMPLATE_VARIABLES = {
    "first_name": "there",
    "last_name": "",
    "full_name": "there",
    "email": "",
    "company": "your company",
    "job_title": "your role",
    "industry": "your industry",
    "company_size": "",
    "niche": "B2B",
    "service": "our services",
    "campaign": "",
    "sender_name": "The team",
    "site_url": "",
}

_ENGINE = Engine(autoescape=False, string_if_invalid="", app_dirs=False, dirs=[])
_SINGLE_BRACE = re.compile(r"(?<!\{)\{\s*([A-Za-z_]\w*)\s*\}(?!\})")

DEFAULT_STEPS = (
    (
        0,
        "Idea for {{ company }}",
        """Hi {{ first_name }},

I work with {{ niche }} teams on {{ service }}, and I had a look at what {{ company }} is doing.
There are a couple of quick wins I think would matter for someone in {{ job_title }}.

Would a 15-minute call next week be useful? If not, no problem at all.

Best,
{{ sender_name }}

Not interested? Reply "no" and I will not write again.""",
    ),
    (
        3,
        "Re: Idea for {{ company }}",
        """Hi {{ first_name }},

Following up on my note from last week: I would be glad to share the two or three ideas for
{{ company }} in a short call, or by email if that is easier.

Best,
{{ sender_name }}""",
    ),
    (
        4,
        "Should I close your file?",
        """Hi {{ first_name }},

I have not heard back, so I will assume {{ service }} is not a priority at {{ company }} right now.
If that changes, just reply to this email.

All the best,
{{ sender_name }}""",
    ),
)


class RenderError(Exception):
    pass


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    body: str


def campaign_steps(campaign: Campaign) -> list[MessageStep]:
    """The campaign's steps in order, or the built-in first touch and two follow-ups."""
    steps = list(campaign.steps.order_by("position"))
    if steps:
        return steps
    return [
        MessageStep(campaign=campaign, position=i, delay_days=delay, subject_template=subject, body_template=body)
        for i, (delay, subject, body) in enumerate(DEFAULT_STEPS, start=1)
    ]


@lru_cache(maxsize=256)
def _compile(text: str) -> Template:
    return _ENGINE.from_string(text)


class _RecordingContext(Context):
    """A context that notes every name a template looks up and does not have."""

    def __init__(self, values):
        super().__init__(values, autoescape=False)
        self.missing = []

    def __getitem__(self, key):
        try:
            return super().__getitem__(key)
        except KeyError:
            self.missing.append(key)
            raise


def _unknown(name: str) -> TemplateSyntaxError:
    return TemplateSyntaxError(f"unknown variable {{{{ {name} }}}}; use one of: {', '.join(TEMPLATE_VARIABLES)}")


def check_template(text: str) -> None:
    """Raise TemplateSyntaxError for a template that would not render as the operator meant:
    bad syntax, an unknown variable anywhere (placeholders, filter arguments, tags), a
    placeholder left unclosed or written with single braces (both would be mailed verbatim)."""
    template = _compile(text)
    for node in template.nodelist.get_nodes_by_type(VariableNode):
        expression = node.filter_expression
        variables = [expression.var] + [arg for _, args in expression.filters for lookup, arg in args if lookup]
        for var in variables:
            lookups = getattr(var, "lookups", None)
            if lookups and lookups[0] not in TEMPLATE_VARIABLES:
                raise _unknown(lookups[0])
    for node in template.nodelist.get_nodes_by_type(TextNode):
        for marker in ("{{", "{%", "}}", "%}"):
            if marker in node.s:
                raise TemplateSyntaxError(f"unbalanced {marker!r} near {node.s.strip()[:40]!r}")
    single = _SINGLE_BRACE.search(text)
    if single:
        name = single.group(1)
        raise TemplateSyntaxError(f"write {{{{ {name} }}}} with double braces, not {single.group(0)}")
    # Tags ({% if nickname %}) name variables too: a trial render records what it looked up in vain.
    context = _RecordingContext({name: "x" for name in TEMPLATE_VARIABLES})
    try:
        template.render(context)
    except Exception as exc:  # e.g. {% include %}: whatever fails here fails for every lead
        raise TemplateSyntaxError(f"cannot be rendered: {exc}") from exc
    if context.missing:
        raise _unknown(context.missing[0])


def _human(value: str) -> str:
    """'john' or 'JOHN' → 'John'; mixed case (McDonald, iPhone) is left alone."""
    value = " ".join((value or "").split())
    return value.title() if value.islower() or value.isupper() else value


def message_context(lead: Lead, campaign: Campaign) -> dict[str, str]:
    values = {
        "first_name": _human(lead.first_name),
        "last_name": _human(lead.last_name),
        "full_name": " ".join(p for p in (_human(lead.first_name), _human(lead.last_name)) if p),
        "email": lead.email,
        "company": " ".join(lead.company.split()),
        "job_title": " ".join(lead.job_title.split()),
        "industry": lead.industry,
        "company_size": lead.company_size,
        "niche": campaign.target_niche,
        "service": campaign.service_key.replace("_", " ").strip(),
        "campaign": campaign.name,
        "sender_name": campaign.sender_name,
        "site_url": settings.CAM_SITE_URL,
    }
    return {name: values.get(name) or fallback for name, fallback in TEMPLATE_VARIABLES.items()}


def message_render(step: MessageStep, lead: Lead, campaign: Campaign) -> RenderedMessage:
    """Render `step` for `lead`; RenderError if the step's templates are broken."""
    context = Context(message_context(lead, campaign), autoescape=False)
    try:
        subject = _compile(step.subject_template).render(context)
        body = _compile(step.body_template).render(context)
    except Exception as exc:  # a broken template is a campaign problem, reported per lead
        raise RenderError(f"step {step.position} cannot be rendered: {exc}") from exc
    # One line, as mail headers require; the model's limit.
    subject = " ".join(subject.split())[:300]
    return RenderedMessage(subject=subject, body=body.strip() + "\n")
