"""Console pages of outreach: resolve a send left claimed or unknown; the mailboxes, their day
and their login check."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from campaigns.models import Campaign
from campaigns.services import Refused
from leads.services import Actor
from outreach.attention import attempt_resolve
from outreach.exports import attempts_csv
from outreach.forms import MailboxForm
from outreach.limits import mailbox_today, window_text
from outreach.mailboxes import mailbox_check
from outreach.models import Mailbox, OutreachAttempt


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
        to = attempt.lead.email if attempt.lead_id else "an erased person"
        messages.success(request, f"Step {attempt.step} to {to} recorded as {said}.")
    return back(request, f"/campaigns/{attempt.campaign_id}")


@login_required
@permission_required("outreach.view_outreachattempt", raise_exception=True)
def campaign_attempts_csv(request, pk):
    """Every send of the campaign, newest first, as a streamed CSV download."""
    campaign = get_object_or_404(Campaign, pk=pk)
    attempts = OutreachAttempt.objects.filter(campaign=campaign).order_by("-created_at", "-id")
    return attempts_csv(campaign=campaign, attempts=attempts)


# --- mailboxes ----------------------------------------------------------------------------------------


@login_required
@permission_required("outreach.view_mailbox", raise_exception=True)
def mailbox_list(request):
    now = timezone.now()
    mailboxes = list(Mailbox.objects.prefetch_related("campaigns").order_by("name", "id"))
    rows = [{"mailbox": box, "today": mailbox_today(mailbox=box, now=now), "window": window_text(box)}
            for box in mailboxes]
    return render(request, "console/mailboxes.html", {"rows": rows})


@login_required
def mailbox_new(request):
    return _mailbox_page(request, None)


@login_required
def mailbox_edit(request, pk):
    return _mailbox_page(request, get_object_or_404(Mailbox, pk=pk))


def _mailbox_page(request, mailbox: Mailbox | None):
    permission = "outreach.change_mailbox" if mailbox else "outreach.add_mailbox"
    if not request.user.has_perm("outreach.view_mailbox" if mailbox else permission):
        raise PermissionDenied
    may_save = request.user.has_perm(permission)
    if request.method == "POST":
        if not may_save:
            raise PermissionDenied
        form = MailboxForm(request.POST, instance=mailbox)
        if form.is_valid():
            saved = form.save_mailbox()
            messages.success(request, f"Mailbox “{saved.name}” saved.")
            return redirect("mailbox-edit", pk=saved.pk)
    else:
        form = MailboxForm(instance=mailbox)
        for field in form.fields.values():
            field.disabled = not may_save
    check = request.session.pop(f"mailbox_check_{mailbox.pk}", None) if mailbox else None
    today = mailbox_today(mailbox=mailbox, now=timezone.now()) if mailbox else None
    return render(request, "console/mailbox.html", {"mailbox": mailbox, "form": form, "may_save": may_save,
                                                    "check": check, "today": today})


@require_POST
@login_required
@permission_required("outreach.change_mailbox", raise_exception=True)
def mailbox_test_view(request, pk):
    mailbox = get_object_or_404(Mailbox, pk=pk)
    checks = mailbox_check(mailbox=mailbox)
    request.session[f"mailbox_check_{mailbox.pk}"] = {name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()}
    return redirect("mailbox-edit", pk=mailbox.pk)
