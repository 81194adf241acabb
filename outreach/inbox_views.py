"""The console's inbox (SPEC §9): what came back, for all campaigns or one, newest first, with
what CAM did about each message; staff reclassify a message or record what a reply came to."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from campaigns.models import Campaign
from campaigns.services import Refused
from leads.services import Actor
from outreach.models import InboundMessage
from outreach.replies import inbound_messages, inbound_reclassify, inbound_record_outcome
from outreach.views import back

PAGE = 50


@login_required
@permission_required("outreach.view_inboundmessage", raise_exception=True)
def inbox(request, pk=None):
    campaign = get_object_or_404(Campaign, pk=pk) if pk is not None else None
    kind = request.GET.get("kind", "")
    kind = kind if kind in InboundMessage.Kind.values else ""
    unmatched_only = request.GET.get("matched") == "no"
    found = inbound_messages(campaign_id=campaign.pk if campaign else None, kind=kind,
                             matched=False if unmatched_only else None)
    page = Paginator(found, PAGE).get_page(request.GET.get("page"))
    return render(request, "console/inbox.html", {
        "campaign": campaign, "page": page, "kind": kind, "kinds": InboundMessage.Kind.choices,
        "outcomes": InboundMessage.Outcome.choices, "unmatched_only": unmatched_only,
        "inbox_minutes": settings.CAM_INBOX_MINUTES,
    })


@require_POST
@login_required
@permission_required("outreach.change_inboundmessage", raise_exception=True)
def inbound_change(request, pk):
    message = get_object_or_404(InboundMessage, pk=pk)
    actor, now = Actor.staff(request.user), timezone.now()
    try:
        if kind := request.POST.get("kind"):
            message = inbound_reclassify(message=message, kind=kind, now=now, actor=actor)
            messages.success(request, f"Message from {message.from_email or 'an unknown sender'} is now "
                                      f"{message.get_kind_display().lower()}: {message.action}")
        elif outcome := request.POST.get("outcome"):
            message = inbound_record_outcome(message=message, outcome=outcome, now=now, actor=actor)
            messages.success(request, f"{message.lead.email}: {message.get_outcome_display().lower()}.")
    except Refused as exc:
        messages.warning(request, f"Not changed: {exc}.")
    return back(request, "/inbox")
