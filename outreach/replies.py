"""Acting on what comes back (SPEC §9): a parsed message is matched to the attempt or lead it
answers, stored once and acted on in the same transaction, so two readers of one mailbox never
apply a message twice. Staff may reclassify a message (its effects are undone where that is safe,
then the new kind's follow) and record the outcome of a reply.

What each kind does:
- reply: the lead is REPLIED, every other sequence to the address stops, and where a campaign
  says so (stop_company_on_reply), its sequences to the same company domain;
- auto-reply: no status change; the lead's next email waits CAM_OOO_DELAY_DAYS;
- bounce: hard, the address is suppressed as bounced, the lead LOST and the attempt marked
  bounced (bounce protection counts it); soft, noted on the lead, the sequence goes on;
- unsubscribe request: the sender's address (and the lead's, when the message answers our email)
  is suppressed as unsubscribed.
"""

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q

from campaigns.models import Campaign
from campaigns.services import Refused, campaign_pause
from leads.models import Lead, LeadEvent
from leads.rows import email_normalise
from leads.services import (
    Actor,
    lead_event,
    lead_mark_bounced,
    lead_postpone,
    lead_record_outcome,
    lead_record_reply,
    lead_undo,
)
from outreach.inbound import Parsed
from outreach.limits import bounce_protection_reason
from outreach.models import InboundMessage, Mailbox, OutreachAttempt, Suppression
from outreach.suppression import suppression_add, suppression_remove

logger = logging.getLogger(__name__)
Kind = InboundMessage.Kind
Status = Lead.Status
READER = Actor("inbox reader")


@dataclass(frozen=True)
class Match:
    attempt: OutreachAttempt | None = None
    lead: Lead | None = None
    by: str = ""  # message_id, recipient, sender, or "": unmatched


def inbound_match(parsed: Parsed, *, mailbox: Mailbox | None = None) -> Match:
    """What the message answers: the attempt whose Message-ID it refers to (a bounce's original
    message first), else for a bounce the lead its failed recipient names, else a contacted lead
    with the sender's address (the mailbox's own campaigns first, then the latest contacted)."""
    ids = [parsed.bounce_message_id] if parsed.kind == Kind.BOUNCE and parsed.bounce_message_id else []
    ids += parsed.in_reply_to
    if ids:
        attempt = (OutreachAttempt.objects.filter(message_id__in=ids[:50]).exclude(message_id="")
                   .select_related("lead", "campaign").order_by("-created_at", "-id").first())
        if attempt is not None:
            return Match(attempt, attempt.lead, "message_id")
    if parsed.kind == Kind.BOUNCE:
        if parsed.bounce_recipient and (found := _contacted(parsed.bounce_recipient, mailbox)):
            return Match(found[1], found[0], "recipient")
        return Match()
    if parsed.from_email and (found := _contacted(parsed.from_email, mailbox)):
        return Match(found[1], found[0], "sender")
    return Match()


def _contacted(address: str, mailbox: Mailbox | None) -> tuple[Lead, OutreachAttempt | None] | None:
    """The lead CAM emailed at this address, and its latest attempt: a lead never emailed does
    not get a reply (an old message from a person now imported is not an answer)."""
    leads = Lead.objects.filter(email=email_normalise(address), first_contacted_at__isnull=False).select_related("campaign")
    if mailbox is not None:
        own = leads.filter(attempts__mailbox=mailbox).distinct().order_by("-last_contacted_at", "-id").first()
        if own is not None:
            leads = Lead.objects.filter(pk=own.pk).select_related("campaign")
    lead = leads.order_by("-last_contacted_at", "-id").first()
    if lead is None:
        return None
    return lead, lead.attempts.order_by("-created_at", "-id").first()


# --- storing once and acting -------------------------------------------------------------------


def inbound_store(*, parsed: Parsed, now: datetime, mailbox: Mailbox | None = None, folder: str = "",
                  uidvalidity: int | None = None, uid: int | None = None,
                  provider_event_id: str = "", act: bool = True) -> InboundMessage | None:
    """Store the message and act on it, in one transaction: None when it is stored already (the
    same UID, or the same provider event), so a message is applied exactly once. `act=False`
    keeps it unmatched and does nothing (a message that could not be acted on)."""
    parsed = _storable(parsed)
    match = inbound_match(parsed, mailbox=mailbox) if act else Match()
    message = InboundMessage(
        mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, uid=uid, provider_event_id=provider_event_id,
        message_id=parsed.message_id[:998], from_email=parsed.from_email, from_name=parsed.from_name,
        to=parsed.to, subject=parsed.subject[:1000], sent_at=parsed.sent_at, kind=parsed.kind,
        bounce_hard=parsed.bounce_hard, bounce_recipient=parsed.bounce_recipient, lead=match.lead,
        attempt=match.attempt, matched_by=match.by, text=parsed.text, evidence=parsed.evidence, received_at=now,
    )
    try:
        with transaction.atomic():
            message.save()
            if act:
                _apply(message, now=now, actor=READER)
            else:
                message.action = "not acted on: see the error"
                message.save(update_fields=["action"])
    except IntegrityError:
        if _stored(message):
            return None
        raise
    return message


def _storable(parsed: Parsed) -> Parsed:
    """The parsed message without NUL characters, which PostgreSQL's text columns refuse (a
    hostile sender can put them in any header or in the text)."""
    def clean(value):
        if isinstance(value, str):
            return value.replace("\x00", "")
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return replace(parsed, **{name: clean(getattr(parsed, name)) for name in (
        "message_id", "in_reply_to", "from_email", "from_name", "to", "subject", "text", "bounce_recipient",
        "bounce_message_id", "evidence")})


def _stored(message: InboundMessage) -> bool:
    if message.provider_event_id:
        return InboundMessage.objects.filter(provider_event_id=message.provider_event_id).exists()
    return InboundMessage.objects.filter(mailbox=message.mailbox, folder=message.folder,
                                         uidvalidity=message.uidvalidity, uid=message.uid).exists()


def _apply(message: InboundMessage, *, now: datetime, actor: Actor) -> None:
    """Act on the message's kind; record what was done (`action`) and what to undo (`effects`)."""
    act = {Kind.REPLY: _reply, Kind.AUTO_REPLY: _auto_reply, Kind.BOUNCE: _bounce,
           Kind.UNSUBSCRIBE: _unsubscribe}[message.kind]
    effects: dict = {}
    if message.kind != Kind.BOUNCE and _own_address(message.from_email):
        # A copy of CAM's own email (a Bcc to itself, a server filing sent mail in the inbox):
        # its In-Reply-To names the lead's thread, but it is no answer from the lead.
        done = "sent from one of CAM's own addresses: nothing done"
    else:
        done = act(message, now, actor, effects)
    message.action, message.effects = done[:500], effects
    message.save(update_fields=["action", "effects"])


def _own_address(email: str) -> bool:
    return bool(email) and (Mailbox.objects.filter(from_email__iexact=email).exists()
                            or Campaign.objects.filter(sender_email__iexact=email).exists())


def _reply(message, now, actor, effects) -> str:
    lead = message.lead
    if lead is None:
        return "unmatched: no lead CAM emailed at this address"
    changed = lead_record_reply(lead=lead, now=now, actor=actor, note=f"reply received (inbound #{message.pk})")
    effects["lead_before"] = changed["before"]
    done = f"lead #{lead.pk} REPLIED" if changed["before"] else f"lead #{lead.pk} stays {changed['status']}"
    if changed["others"]:
        done += f"; {changed['others']} other sequence(s) to the address stopped"
    if changed["company"]:
        done += f"; {changed['company']} sequence(s) to the company stopped"
    return done


def _auto_reply(message, now, actor, effects) -> str:
    lead = message.lead
    if lead is None:
        return "unmatched: nothing to delay"
    until = now + timedelta(days=settings.CAM_OOO_DELAY_DAYS)
    before = lead_postpone(lead=lead, until=until, now=now, actor=actor,
                           reason=f"out-of-office reply (inbound #{message.pk}): next email not before {until:%Y-%m-%d}")
    if before is None:
        return f"lead #{lead.pk}: no email due before {until:%Y-%m-%d}, nothing to delay"
    effects["lead_before"], effects["postponed_to"] = before, until.isoformat()
    return f"lead #{lead.pk}: next email delayed to {until:%Y-%m-%d %H:%M} UTC"


def _bounce(message, now, actor, effects) -> str:
    address = message.bounce_recipient or (message.lead.email if message.lead else "")
    if not message.bounce_hard:
        if message.lead is not None:
            lead_event(lead=message.lead, kind=LeadEvent.Kind.BOUNCED,
                       actor=actor, now=now, from_status=message.lead.status,  # read in this transaction
                       reason=f"soft bounce ({message.evidence.get('status') or 'temporary'}); the sequence goes on")
        return f"soft bounce for {address or 'an unknown recipient'}: noted, nothing stopped"
    done = []
    if address:
        suppression, created = suppression_add(email=address, reason=Suppression.Reason.BOUNCED, now=now, actor=actor,
                                               note=f"hard bounce (inbound #{message.pk})")
        effects["suppression_created"] = created and suppression.email
        done.append(f"{suppression.email} suppressed" + ("" if created else f" (already, {suppression.reason})"))
    attempt = message.attempt
    if attempt is not None and attempt.bounced_at is None:
        OutreachAttempt.objects.filter(pk=attempt.pk, bounced_at__isnull=True).update(bounced_at=now)
        effects["attempt_bounced"] = attempt.pk
        done.append(f"attempt #{attempt.pk} bounced")
        if reason := bounce_protection_reason(campaign=attempt.campaign):
            campaign_pause(campaign=attempt.campaign, reason=reason, now=now)
            done.append(f"campaign #{attempt.campaign_id} paused (bounce protection)")
    if message.lead is not None:
        before = lead_mark_bounced(lead=message.lead, now=now, actor=actor,
                                   reason=f"hard bounce (inbound #{message.pk})")
        effects["lead_before"] = before
        if before:
            done.append(f"lead #{message.lead.pk} LOST")
    return "; ".join(done) or "hard bounce for an unknown recipient: nothing to stop"


def _unsubscribe(message, now, actor, effects) -> str:
    addresses = {message.from_email} if message.from_email else set()
    if message.lead is not None and message.matched_by == "message_id":
        addresses.add(message.lead.email)  # asked in the thread of our email to the lead
    complained = message.evidence.get("event") == "complained"  # an ESP's spam report
    reason = Suppression.Reason.COMPLAINED if complained else Suppression.Reason.UNSUBSCRIBED
    note = f"{'spam complaint' if complained else 'asked in a reply'} (inbound #{message.pk})"
    created_for, done = [], []
    for address in sorted(a for a in addresses if "@" in a):
        try:
            suppression, created = suppression_add(email=address, reason=reason, now=now, actor=actor, note=note)
        except DatabaseError as exc:  # an address too odd to store (its own savepoint): reported
            done.append(f"{address!r} could not be suppressed: {exc}")
            continue
        if created:
            created_for.append(suppression.email)
        done.append(f"{suppression.email} suppressed" + ("" if created else f" (already, {suppression.reason})"))
    effects["suppressions_created"] = created_for
    return "; ".join(done) or "no address to suppress"


# --- staff: what came back, reclassify, record the outcome ---------------------------------------


def inbound_messages(*, campaign_id: int | None = None, kind: str = "", mailbox_id: int | None = None,
                     matched: bool | None = None):
    """What came back, newest first, as the console's inbox and the API list it: a campaign's
    (matched to its leads or its sends), one kind, one mailbox's, matched or not."""
    messages = InboundMessage.objects.select_related("mailbox", "lead__campaign", "attempt", "reviewed_by")
    if campaign_id is not None:
        messages = messages.filter(Q(lead__campaign_id=campaign_id) | Q(attempt__campaign_id=campaign_id))
    if kind:
        messages = messages.filter(kind=kind)
    if mailbox_id is not None:
        messages = messages.filter(mailbox_id=mailbox_id)
    if matched is not None:
        messages = messages.exclude(lead=None) if matched else messages.filter(lead=None)
    return messages.order_by("-received_at", "-id")


@transaction.atomic
def inbound_reclassify(*, message: InboundMessage, kind: str, now: datetime, actor: Actor) -> InboundMessage:
    """Staff say what the message really is: its effects are undone where that is safe (a lead
    put back only if nothing else changed it since; a suppression this message made is lifted,
    and the leads it stopped stay stopped until resumed), then the new kind's effects follow."""
    if kind not in Kind.values:
        raise Refused(f"kind must be one of {', '.join(Kind.values)}")
    message = InboundMessage.objects.select_for_update(of=("self",)).select_related("lead", "attempt__campaign").get(
        pk=message.pk)
    if message.kind == kind:
        return message
    undone = _undo(message, now, actor)
    was = message.kind
    message.kind = kind
    if kind == Kind.BOUNCE:
        message.bounce_hard = True  # staff saying "bounce" mean it will not get through
    message.evidence = {**message.evidence, "reclassified": f"{was} → {kind} by {actor.label}"}
    message.reviewed_by, message.reviewed_at = actor.user, now
    message.save(update_fields=["kind", "bounce_hard", "evidence", "reviewed_by", "reviewed_at"])
    _apply(message, now=now, actor=actor)
    if undone:
        message.action = f"{'; '.join(undone)}; then {message.action}"[:500]
        message.save(update_fields=["action"])
    return message


def _undo(message: InboundMessage, now: datetime, actor: Actor) -> list[str]:
    effects, undone = message.effects or {}, []
    reason = f"inbound #{message.pk} reclassified: its {message.kind} effects undone"
    lead, before = message.lead, effects.get("lead_before")
    if lead is not None and before:
        if message.kind == Kind.AUTO_REPLY:
            expect_status, expect_due = before["status"], datetime.fromisoformat(effects["postponed_to"])
        else:
            expect_status, expect_due = (Status.REPLIED if message.kind == Kind.REPLY else Status.LOST), None
        if lead_undo(lead=lead, before=before, expect_status=expect_status, expect_due=expect_due, now=now,
                     actor=actor, reason=reason):
            undone.append(f"lead #{lead.pk} back to {before['status']}")
        else:
            undone.append(f"lead #{lead.pk} left as it is (changed since)")
    lifted = [effects["suppression_created"]] if effects.get("suppression_created") else []
    lifted += effects.get("suppressions_created") or []
    for email in lifted:
        suppression = Suppression.objects.filter(email=email).first()
        if suppression is not None:
            suppression_remove(suppression=suppression)
            undone.append(f"{email} no longer suppressed")
    if attempt_pk := effects.get("attempt_bounced"):
        OutreachAttempt.objects.filter(pk=attempt_pk).update(bounced_at=None)
        undone.append(f"attempt #{attempt_pk} not bounced")
    message.effects = {}
    return undone


@transaction.atomic
def inbound_record_outcome(*, message: InboundMessage, outcome: str, now: datetime, actor: Actor) -> InboundMessage:
    """Staff read the reply: interested (the lead is QUALIFIED) or not interested (LOST)."""
    if outcome not in InboundMessage.Outcome.values:
        raise Refused(f"outcome must be one of {', '.join(InboundMessage.Outcome.values)}")
    message = InboundMessage.objects.select_for_update(of=("self",)).select_related("lead").get(pk=message.pk)
    if message.lead is None:
        raise Refused("this message is not matched to a lead: find the lead and record the outcome there")
    lead_outcome = "qualified" if outcome == InboundMessage.Outcome.INTERESTED else "lost"
    lead_record_outcome(lead=message.lead, outcome=lead_outcome, now=now, actor=actor)
    message.outcome, message.reviewed_by, message.reviewed_at = outcome, actor.user, now
    message.save(update_fields=["outcome", "reviewed_by", "reviewed_at"])
    return message
