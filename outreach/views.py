"""Console actions on sends: resolve one left claimed or unknown as sent or not sent."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from campaigns.services import Refused
from leads.services import Actor
from outreach.attention import attempt_resolve
from outreach.models import OutreachAttempt


def back(request, default: str):
    """Where the form came from (its `next`), if it is a page of this site."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect(default)


@require_POST
@login_required
@permission_required("outreach.change_outreachattempt", raise_exception=True)
def attempt_resolve_view(request, pk):
    attempt = get_object_or_404(OutreachAttempt, pk=pk)
    outcome = request.POST.get("outcome", "")
    try:
        attempt = attempt_resolve(attempt=attempt, outcome=outcome, actor=Actor.staff(request.user), now=timezone.now())
    except Refused as exc:
        messages.warning(request, f"Not resolved: {exc}.")
    else:
        said = "sent" if attempt.resolution == OutreachAttempt.Resolution.SENT else "not sent"
        messages.success(request, f"Step {attempt.step} to {attempt.lead.email} recorded as {said}.")
    return back(request, f"/campaigns/{attempt.campaign_id}")
