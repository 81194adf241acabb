"""A step as a lead would get it (the sequence editor's live preview): the templates being
written, rendered for one of the campaign's leads (or a lead with none of the optional fields,
to see the fallbacks), with the From line and the footer the send adds, or the template errors."""

from dataclasses import dataclass, field
from email.utils import formataddr

from django.conf import settings
from django.core.mail import EmailMessage
from django.template import TemplateSyntaxError

from campaigns.models import Campaign, MessageStep
from campaigns.services import postal_address
from leads.models import Lead
from outreach.messages import RenderError, check_template, message_render
from outreach.sending import sender_identity
from outreach.transport import Mailer, MailServerDown, MessageProblem, message_prepare
from outreach.unsubscribe import message_footer

EXAMPLE_ADDRESS = "someone@example.com"


@dataclass
class Preview:
    subject: str = ""
    body: str = ""
    sender: str = ""
    to: str = ""
    errors: dict = field(default_factory=dict)
    mailbox: object = None  # the Mailbox it would go through; None: the environment's server

    def as_dict(self) -> dict:
        return {"subject": self.subject, "body": self.body, "from": self.sender, "to": self.to, "errors": self.errors}


def step_preview(*, campaign: Campaign, subject_template: str, body_template: str, lead: Lead | None) -> Preview:
    """The rendered step for `lead` (None: a lead with only an address), exactly as the send
    builds it: the first active mailbox's sender (else the campaign's), the footer with the
    postal address and the unsubscribe link for that address."""
    preview = Preview()
    for name, text in (("subject_template", subject_template), ("body_template", body_template)):
        try:
            check_template(text)
        except TemplateSyntaxError as exc:
            preview.errors[name] = f"Template error: {exc}"
    if preview.errors:
        return preview
    lead = lead or Lead(campaign=campaign, email=EXAMPLE_ADDRESS)
    step = MessageStep(campaign=campaign, position=1, subject_template=subject_template, body_template=body_template)
    try:
        rendered = message_render(step, lead, campaign)
    except RenderError as exc:
        preview.errors["body_template"] = str(exc)
        return preview
    preview.mailbox, name, email = _first_sender(campaign)
    preview.subject, preview.to = rendered.subject, lead.email
    preview.sender = formataddr((name, email))
    preview.body = rendered.body + message_footer(sender_name=name, sender_email=email,
                                                  postal_address=postal_address(campaign), email=lead.email)
    return preview


def _first_sender(campaign: Campaign):
    """Who a first email of the campaign would go from: its first active mailbox (None: the
    environment's server), and the name and address it sends as."""
    box = campaign.mailboxes.filter(active=True).order_by("id").first()
    if box is None:
        return None, *sender_identity(campaign)
    return box, box.from_name or campaign.sender_name, box.from_email


def step_test_send(*, campaign: Campaign, subject_template: str, body_template: str, lead: Lead | None,
                   to: str) -> str:
    """Send the step, rendered for `lead`, to `to` (the staff member's own address) through the
    campaign's mailbox, as a test: "[Test] " before the subject; no attempt, no quota, no cap,
    never to a lead. Returns what happened, in words; MessageProblem for templates that do not
    render or a message that cannot be built, MailServerDown when it could not be handed over."""
    preview = step_preview(campaign=campaign, subject_template=subject_template, body_template=body_template,
                           lead=lead)
    if preview.errors:
        raise MessageProblem("; ".join(preview.errors.values()))
    box = preview.mailbox
    message = message_prepare(EmailMessage(subject=f"[Test] {preview.subject}", body=preview.body,
                                           from_email=preview.sender, to=[to]))
    mailer = Mailer(send_seconds=settings.CAM_SEND_TIMEOUT_SECONDS, mailbox=box)
    try:
        mailer.ready()
        outcome = mailer.send(message)
    finally:
        mailer.close()
    if outcome.status != "sent":
        raise MailServerDown(f"not sent ({outcome.status}): {outcome.error}")
    return f"sent to {to} through {box.name if box else 'the server in the environment (EMAIL_*)'}"
