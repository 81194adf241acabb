"""Message steps and their rendering for one lead.

Templates use Django's template language with autoescaping off (plain-text mail). Every
variable in TEMPLATE_VARIABLES always has a value: a lead's missing field renders its fallback,
so no mail goes out as "Hi ," or with a raw placeholder. Unknown variables are refused when a
step is saved (`check_template`).

Templates run in a sandbox (SPEC §6, "Input is bounded"): the engine's only built-ins are the
tags and filters a message needs (ALLOWED_TAGS, ALLOWED_FILTERS), so `{% debug %}`, `{% load %}`,
`{% include %}` or `{% url %}` are invalid block tags, as they would be in a project that never
loaded them. Nothing a template does can make a large message: a value is at most
MAX_VALUE_LENGTH characters after its filters, loops do not nest and stop at MAX_BODY_LENGTH,
and a body longer than that is refused, never cut.
"""

import re
from dataclasses import dataclass
from functools import lru_cache, wraps

from django.conf import settings
from django.template import Context, Engine, Library, Template, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import FilterExpression, NodeList, TextNode, VariableNode
from django.template.defaulttags import FirstOfNode, ForNode, IfNode, WithNode

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


# --- the sandbox ---------------------------------------------------------------------------------

# Django's own tags and filters that a message needs. Everything else is unknown to the engine:
# tags that read files or load code (include, extends, ssi, load), show the context or settings
# (debug), resolve URLs, make text from nothing (lorem, cycle, widthratio, now) or work on HTML,
# and filters that pad or format a value to any width (center, ljust, rjust, stringformat, …).
ALLOWED_TAGS = ("if", "for", "with", "firstof", "comment")
ALLOWED_FILTERS = (
    "default", "default_if_none", "lower", "upper", "title", "capfirst", "cut", "first", "last", "join",
    "length", "slice", "truncatechars", "truncatewords", "wordcount", "yesno", "pluralize", "add",
    "make_list", "striptags",
)
# A rendered body (and a template) is at most this long; a longer body is refused, never cut.
MAX_BODY_LENGTH = 20_000
# One value after its filters: {% with %} and add/join could otherwise double it at every step.
MAX_VALUE_LENGTH = 2_000
# The longest lead field (company, job title): what check_template's trial render gives each variable.
LONG_VALUE = 200


class MessageTooLong(RenderError):
    pass


def _size(value) -> int:
    return len(value) if isinstance(value, (str, list, tuple)) else 0


def _join_size(value, separator) -> int:
    try:
        items = [str(item) for item in value]
    except TypeError:
        return 0
    return sum(map(len, items)) + len(str(separator)) * max(len(items) - 1, 0)


def _bounded(name: str, func):
    """The filter `func`, refusing a result longer than MAX_VALUE_LENGTH (a join before it is built)."""

    @wraps(func)  # keeps is_safe, needs_autoescape and the signature Django checks
    def bounded(value, *args, **kwargs):
        if name == "join" and args and _join_size(value, args[0]) > MAX_VALUE_LENGTH:
            raise MessageTooLong(f"|join would make a value longer than {MAX_VALUE_LENGTH:,} characters")
        result = func(value, *args, **kwargs)
        if _size(result) > MAX_VALUE_LENGTH:
            raise MessageTooLong(f"|{name} makes a value longer than {MAX_VALUE_LENGTH:,} characters")
        return result

    return bounded


class _Counted:
    """A node of a loop's body: its output counts against MAX_BODY_LENGTH as the loop runs, so a
    loop stops at the limit instead of building megabytes first."""

    __slots__ = ("node",)

    def __init__(self, node):
        self.node = node

    def __getattr__(self, name):
        return getattr(self.node, name)

    def render_annotated(self, context):
        output = self.node.render_annotated(context)
        used = context.render_context.get(_Counted, 0) + len(output)
        if used > MAX_BODY_LENGTH:
            raise MessageTooLong(f"a for loop makes the message longer than {MAX_BODY_LENGTH:,} characters")
        context.render_context[_Counted] = used
        return output


class _CountedNodeList(NodeList):
    def __iter__(self):
        return (_Counted(node) for node in super().__iter__())


MESSAGE_LIBRARY = Library()
for _name in ALLOWED_FILTERS:
    MESSAGE_LIBRARY.filter(_name, _bounded(_name, defaultfilters.register.filters[_name]))
for _name in ("if", "with", "firstof", "comment"):
    MESSAGE_LIBRARY.tag(_name, defaulttags.register.tags[_name])


@MESSAGE_LIBRARY.tag("for")
def _for(parser, token):
    """Django's for loop, not nested in another one, its body's output counted (_Counted)."""
    node = defaulttags.do_for(parser, token)
    if node.nodelist_loop.get_nodes_by_type(ForNode) or node.nodelist_empty.get_nodes_by_type(ForNode):
        raise TemplateSyntaxError("a for loop inside another for loop is not allowed in a message")
    node.nodelist_loop = _CountedNodeList(node.nodelist_loop)
    return node


class _MessageEngine(Engine):
    """Django's engine whose only built-ins are MESSAGE_LIBRARY (not Django's default tags,
    filters and loader tags): an unknown tag is Django's own "Invalid block tag" error."""

    default_builtins = []

    def get_template_builtins(self, builtins):
        return [MESSAGE_LIBRARY]


_ENGINE = _MessageEngine(autoescape=False, string_if_invalid="", app_dirs=False, dirs=[], libraries={})


@lru_cache(maxsize=256)
def _compile(text: str) -> Template:
    return _ENGINE.from_string(text)


def _template(text: str) -> Template:
    """The compiled template; TemplateSyntaxError (saying what a message may use) if it is not one."""
    if len(text) > MAX_BODY_LENGTH:
        raise TemplateSyntaxError(f"a message template may have at most {MAX_BODY_LENGTH:,} characters")
    try:
        return _compile(text)
    except RecursionError:
        raise TemplateSyntaxError("the template's tags are nested too deeply") from None
    except TemplateSyntaxError as exc:
        message = str(exc)
        if message.startswith("Invalid block tag"):
            message = message.replace("Did you forget to register or load this tag?", "").rstrip()
            message += f" A message may use only these tags: {', '.join(ALLOWED_TAGS)}."
        elif message.startswith("Invalid filter"):
            message += f". A message may use only these filters: {', '.join(ALLOWED_FILTERS)}."
        raise TemplateSyntaxError(message) from exc


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


def _names(expression: FilterExpression) -> list[str]:
    """The variable names an expression looks up: its value's and its filters' arguments'."""
    variables = [expression.var] + [arg for _, args in expression.filters for lookup, arg in args if lookup]
    return [var.lookups[0] for var in variables if getattr(var, "lookups", None)]


def _condition_expressions(condition):
    """The expressions of an {% if %} condition (a tree of operators over literals)."""
    if condition is None:
        return
    if isinstance(getattr(condition, "value", None), FilterExpression):
        yield condition.value
    for side in (getattr(condition, "first", None), getattr(condition, "second", None)):
        yield from _condition_expressions(side)


def _check_names(nodelist, known: frozenset) -> None:
    """Every name the nodes look up is a template variable, or one that an enclosing
    {% with %} or {% for %} (or a {% firstof … as name %}) defines."""
    for node in nodelist:
        node = node.node if isinstance(node, _Counted) else node
        expressions, inner = [], {}
        if isinstance(node, VariableNode):
            expressions = [node.filter_expression]
        elif isinstance(node, ForNode):
            expressions = [node.sequence]
            inner = {"nodelist_loop": known | {*node.loopvars, "forloop"}}
        elif isinstance(node, WithNode):
            expressions = list(node.extra_context.values())
            inner = {"nodelist": known | set(node.extra_context)}
        elif isinstance(node, FirstOfNode):
            expressions = list(node.vars)
        elif isinstance(node, IfNode):
            expressions = [e for condition, _ in node.conditions_nodelists for e in _condition_expressions(condition)]
        for expression in expressions:
            for name in _names(expression):
                if name not in known:
                    raise _unknown(name)
        for attr in node.child_nodelists:
            _check_names(getattr(node, attr, None) or (), inner.get(attr, known))


def check_template(text: str) -> None:
    """Raise TemplateSyntaxError for a template that would not render as the operator meant:
    bad syntax, a tag or filter outside the sandbox, a for loop in a for loop, an unknown
    variable anywhere (placeholders, filter arguments, tags), a placeholder left unclosed or
    written with single braces (both would be mailed verbatim)."""
    template = _template(text)
    defined = {node.asvar for node in template.nodelist.get_nodes_by_type(FirstOfNode) if node.asvar}
    _check_names(template.nodelist, frozenset(TEMPLATE_VARIABLES) | defined)
    for node in template.nodelist.get_nodes_by_type(TextNode):
        for marker in ("{{", "{%", "}}", "%}"):
            if marker in node.s:
                raise TemplateSyntaxError(f"unbalanced {marker!r} near {node.s.strip()[:40]!r}")
    single = _SINGLE_BRACE.search(text)
    if single:
        name = single.group(1)
        raise TemplateSyntaxError(f"write {{{{ {name} }}}} with double braces, not {single.group(0)}")
    # What the walk above cannot see (a name looked up through another) a trial render records.
    context = _RecordingContext({name: "x" for name in TEMPLATE_VARIABLES})
    try:
        template.render(context)
    except RecursionError:
        raise TemplateSyntaxError("the template's tags are nested too deeply") from None
    except Exception as exc:  # whatever fails here fails for every lead
        raise TemplateSyntaxError(f"cannot be rendered: {exc}") from exc
    if context.missing:
        raise _unknown(context.missing[0])
    # A lead with long details (the longest a name or company can be) must still fit in a message.
    long_values = Context({name: "x" * LONG_VALUE for name in TEMPLATE_VARIABLES}, autoescape=False)
    try:
        length = len(template.render(long_values).strip())
    except MessageTooLong as exc:
        raise TemplateSyntaxError(f"too long for a lead with long details: {exc}") from exc
    if length > MAX_BODY_LENGTH:
        raise TemplateSyntaxError(
            f"too long for a lead with long details: {length:,} characters; a message may have {MAX_BODY_LENGTH:,}"
        )


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
    """Render `step` for `lead`; RenderError if the step's templates are broken, step outside the
    sandbox (a template saved without check_template) or make a body over MAX_BODY_LENGTH."""
    context = Context(message_context(lead, campaign), autoescape=False)
    try:
        subject = _template(step.subject_template).render(context)
        body = _template(step.body_template).render(context).strip()
    except Exception as exc:  # a broken template is a campaign problem, reported per lead
        raise RenderError(f"step {step.position} cannot be rendered: {exc}") from exc
    if len(body) > MAX_BODY_LENGTH:
        raise MessageTooLong(
            f"step {step.position} renders to {len(body):,} characters; a message may have {MAX_BODY_LENGTH:,}"
        )
    # One line, as mail headers require; the model's limit.
    subject = " ".join(subject.split())[:300]
    return RenderedMessage(subject=subject, body=body + "\n")
