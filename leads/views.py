"""The console's leads pages: a campaign's leads (filter, search, CSV upload with its report,
adding a CSV file as a lead source), a large upload's import running in the background, one
lead (details, emails, history, and the outcomes staff record), and an Apollo source's search
edited in a form, with a preview of the people it finds."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from cam_project.uploads import UploadTooLarge, uploaded_file
from cam_project.validators import has_control_characters
from campaigns.models import Campaign
from campaigns.services import Refused
from leads.apollo_source import apollo_preview, apollo_source_save, search_restarts
from leads.clients.http import ProviderError
from leads.forms import ApolloSourceForm
from leads.exports import leads_csv
from leads.import_jobs import import_in_background, import_job_note, import_job_queue
from leads.importing import leads_import_upload
from leads.models import ImportJob, Lead, LeadSource
from leads.rows import LeadFileError
from leads.services import Actor, InvalidTransition, lead_record_outcome, leads_search
from leads.sources import source_csv_save, source_switch
from outreach.attention import in_flight_window, lead_resume, lead_resume_refusal

REPORT_ROWS_SHOWN = 100
SOURCE_NAME_MAX = LeadSource._meta.get_field("name").max_length


@login_required
@permission_required("leads.view_lead", raise_exception=True)
def campaign_leads(request, pk):
    campaign = get_object_or_404(Campaign, pk=pk)
    if request.method == "POST":
        if request.POST.get("action") == "add_source":
            return _add_source(request, campaign)
        return _upload(request, campaign)
    leads, status, search = _filtered_leads(request, campaign)
    page = Paginator(leads, 50).get_page(request.GET.get("page"))
    return render(request, "console/leads.html", {
        "campaign": campaign, "page": page, "status": status, "search": search,
        "statuses": Lead.Status.choices, "report": request.session.pop(f"import_report_{pk}", None),
        "sources": campaign.lead_sources.all(), "max_upload_mb": settings.CAM_MAX_UPLOAD_MB,
    })


def _filtered_leads(request, campaign):
    """The campaign's leads as the page filters them (status, search words), best score first."""
    status = request.GET.get("status", "")
    search = request.GET.get("q", "").strip()[:200].replace("\x00", "")
    leads = Lead.objects.filter(campaign=campaign).order_by("-score", "id")
    if status in Lead.Status.values:
        leads = leads.filter(status=status)
    return leads_search(leads, search), status, search


@login_required
@permission_required("leads.view_lead", raise_exception=True)
def campaign_leads_csv(request, pk):
    """The leads the page shows (all its pages), as a streamed CSV download."""
    campaign = get_object_or_404(Campaign, pk=pk)
    return leads_csv(campaign=campaign, leads=_filtered_leads(request, campaign)[0])


@require_POST
@login_required
@permission_required("leads.change_leadsource", raise_exception=True)
def source_switch_view(request, pk):
    source = get_object_or_404(LeadSource, pk=pk)
    source = source_switch(source=source, active=request.POST.get("active") == "on")
    messages.success(request, f"Source “{source}” is {'on: cycles read it' if source.active else 'off: cycles skip it'}.")
    return redirect(f"{reverse('campaign-leads', args=[source.campaign_id])}#lead-sources")


def _upload_or_say_why(request, field: str, missing: str):
    """The uploaded file, or None once the user is told why there is none (too large, none)."""
    try:
        upload = uploaded_file(request, field)
    except UploadTooLarge as exc:
        messages.error(request, str(exc))
        return None
    if not upload:
        messages.error(request, missing)
    return upload


def _upload(request, campaign):
    if not request.user.has_perm("leads.add_lead"):
        raise PermissionDenied
    upload = _upload_or_say_why(request, "file", "Choose a CSV file to upload.")
    if not upload:
        return redirect("campaign-leads", pk=campaign.pk)
    background = import_in_background(upload.size)
    try:
        if background:
            job = import_job_queue(campaign=campaign, file=upload, name=upload.name, now=timezone.now(),
                                   user=request.user)
        else:
            report = leads_import_upload(campaign=campaign, file=upload, name=upload.name, now=timezone.now(),
                                         by=request.user)
    except LeadFileError as exc:
        messages.error(request, f"{upload.name} cannot be imported: {exc}")
        return redirect("campaign-leads", pk=campaign.pk)
    if background:
        messages.info(request, f"{upload.name} is being imported in the background: this page shows its progress.")
        return redirect("import-detail", pk=job.pk)
    request.session[f"import_report_{campaign.pk}"] = _report_shown(report.as_dict(), upload.name)
    level = messages.success if report.imported else messages.warning
    level(request, f"Imported {report.imported} new lead{'s' if report.imported != 1 else ''} from {upload.name}; "
                   "they are enriched and scored by the next cycle.")
    return redirect("campaign-leads", pk=campaign.pk)


def _report_shown(report: dict, file_name: str) -> dict:
    """An import report as the console shows it: the first rows of each kind, and the file."""
    shown = dict(report)
    for rows in ("duplicate_rows", "rejected_rows", "cut_rows"):
        shown[rows] = shown[rows][:REPORT_ROWS_SHOWN]
    shown["file"] = file_name
    return shown


@login_required
@permission_required("leads.view_lead", raise_exception=True)
def import_detail(request, pk):
    """A large upload's import: its progress while a worker runs it (the page refreshes itself),
    then its report, shown as the leads page shows a small upload's."""
    job = get_object_or_404(ImportJob.objects.select_related("campaign", "requested_by"), pk=pk)
    done = job.status == ImportJob.Status.DONE and job.report is not None
    return render(request, "console/import.html", {
        "job": job, "campaign": job.campaign,
        "in_progress": job.status in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING),
        "note": import_job_note(job, timezone.now()),
        "report": _report_shown(job.report, job.file_name) if done else None,
    })


def _add_source(request, campaign):
    if not request.user.has_perm("leads.add_leadsource"):
        raise PermissionDenied
    upload = _upload_or_say_why(request, "source_file", "Choose a CSV file to add as a lead source.")
    if not upload:
        return redirect("campaign-leads", pk=campaign.pk)
    name = " ".join(request.POST.get("name", "").split())[:SOURCE_NAME_MAX] or upload.name[:SOURCE_NAME_MAX]
    if has_control_characters(name):
        messages.error(request, "Remove the control characters from the source's name.")
        return redirect("campaign-leads", pk=campaign.pk)
    try:
        source = source_csv_save(campaign=campaign, file=upload, name=name, now=timezone.now())
    except LeadFileError as exc:
        messages.error(request, f"{upload.name} cannot be a lead source: {exc}")
        return redirect("campaign-leads", pk=campaign.pk)
    messages.success(request, f"Added the lead source {source.name}: every cycle reads it and picks up its new rows.")
    return redirect("campaign-leads", pk=campaign.pk)


# --- one lead: its details, emails and history, and what staff record about it --------------------

# What each outcome button tells the operator once it is recorded.
OUTCOME_SAID = {
    "replied": "Reply recorded: no more follow-ups.",
    "qualified": "Marked interested (qualified).",
    "lost": "Marked not interested (lost).",
    "do_not_contact": "Tagged do-not-contact: no more email.",
}


@login_required
@permission_required("leads.view_lead", raise_exception=True)
def lead_detail(request, pk):
    lead = get_object_or_404(Lead.objects.select_related("campaign"), pk=pk)
    now = timezone.now()
    return render(request, "console/lead.html", {
        "lead": lead,
        "campaign": lead.campaign,
        "attempts": lead.attempts.select_related("resolved_by").order_by("step", "created_at"),
        "events": lead.events.select_related("user").order_by("created_at", "id"),
        "resume_refusal": lead_resume_refusal(lead, now) if lead.next_action_at is None else None,
        "resolvable_after": now - in_flight_window(),
    })


@require_POST
@login_required
@permission_required("leads.change_lead", raise_exception=True)
def lead_action(request, pk):
    """Staff record an outcome (reply, interested, not interested, do-not-contact) or resume the
    lead, through the same services as the API and the admin."""
    lead = get_object_or_404(Lead, pk=pk)
    action, now, actor = request.POST.get("action", ""), timezone.now(), Actor.staff(request.user)
    try:
        if action == "resume":
            lead_resume(lead=lead, actor=actor, now=now)
            messages.success(request, "Lead resumed: it is due for its next email.")
        else:
            lead_record_outcome(lead=lead, outcome=action, now=now, actor=actor)
            messages.success(request, OUTCOME_SAID[action])
    except (Refused, InvalidTransition) as exc:
        messages.warning(request, f"Not done: {exc}.")
    return redirect("lead-detail", pk=pk)


# --- an Apollo source: its search in a form, and a preview of the people it finds ----------------


@login_required
@permission_required("leads.view_leadsource", raise_exception=True)
def apollo_source_new(request, pk):
    campaign = get_object_or_404(Campaign, pk=pk)
    return _apollo_source_page(request, campaign, None, "leads.add_leadsource")


@login_required
@permission_required("leads.view_leadsource", raise_exception=True)
def apollo_source_edit(request, pk):
    source = get_object_or_404(LeadSource.objects.select_related("campaign"), pk=pk, kind=LeadSource.Kind.APOLLO)
    return _apollo_source_page(request, source.campaign, source, "leads.change_leadsource")


def _apollo_source_page(request, campaign, source, permission: str):
    """The form; "Preview" runs the search for the filters as typed (saving nothing), "Save"
    keeps them. Both need the permission to save: a preview spends the installation's Apollo
    rate limit, and is part of editing."""
    may_save = request.user.has_perm(permission)
    preview = None
    if request.method != "POST":
        form = ApolloSourceForm(source=source)
        for field in form.fields.values():
            field.disabled = not may_save
    elif not may_save:
        raise PermissionDenied
    else:
        form = ApolloSourceForm(request.POST)
        if form.is_valid() and request.POST.get("action") == "preview":
            preview = _preview(form)
        elif form.is_valid():
            data = form.cleaned_data
            restarts = source is not None and search_restarts(source, data["settings"])
            source = apollo_source_save(campaign=campaign, name=data["name"], active=data["active"],
                                        settings=data["settings"], source=source)
            messages.success(request, f"Saved the Apollo source {source.name}"
                             + (": the next cycle starts its search again at page 1, as its filters changed."
                                if restarts else "."))
            return redirect(reverse("campaign-detail", args=[campaign.pk]) + "#lead-sources")
    return render(request, "console/apollo_source.html", {
        "campaign": campaign, "source": source, "form": form, "preview": preview, "may_save": may_save,
    })


def _preview(form: ApolloSourceForm) -> dict | None:
    """The first people the form's filters find, or None with the reason on the form."""
    if not settings.APOLLO_API_KEY:
        return {"no_key": True}
    try:
        return {"result": apollo_preview(filters=form.cleaned_data["settings"])}
    except ProviderError as exc:  # its message never holds the key
        form.add_error(None, f"The preview failed: {exc}")
        return None
