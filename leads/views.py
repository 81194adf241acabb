"""The console's leads page of a campaign: filter, search, and CSV upload with its report."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from campaigns.models import Campaign
from leads.importing import leads_import_upload
from leads.models import Lead
from leads.rows import LeadFileError
from leads.services import leads_search

REPORT_ROWS_SHOWN = 100


@login_required
@permission_required("leads.view_lead", raise_exception=True)
def campaign_leads(request, pk):
    campaign = get_object_or_404(Campaign, pk=pk)
    if request.method == "POST":
        return _upload(request, campaign)
    status = request.GET.get("status", "")
    search = request.GET.get("q", "").strip()[:200].replace("\x00", "")
    leads = Lead.objects.filter(campaign=campaign).order_by("-score", "id")
    if status in Lead.Status.values:
        leads = leads.filter(status=status)
    leads = leads_search(leads, search)
    page = Paginator(leads, 50).get_page(request.GET.get("page"))
    return render(request, "console/leads.html", {
        "campaign": campaign, "page": page, "status": status, "search": search,
        "statuses": Lead.Status.choices, "report": request.session.pop(f"import_report_{pk}", None),
    })


def _upload(request, campaign):
    if not request.user.has_perm("leads.add_lead"):
        raise PermissionDenied
    upload = request.FILES.get("file")
    if not upload:
        messages.error(request, "Choose a CSV file to upload.")
        return redirect("campaign-leads", pk=campaign.pk)
    try:
        report = leads_import_upload(campaign=campaign, file=upload, name=upload.name, now=timezone.now())
    except LeadFileError as exc:
        messages.error(request, f"{upload.name} cannot be imported: {exc}")
        return redirect("campaign-leads", pk=campaign.pk)
    shown = report.as_dict()
    shown["duplicate_rows"] = shown["duplicate_rows"][:REPORT_ROWS_SHOWN]
    shown["rejected_rows"] = shown["rejected_rows"][:REPORT_ROWS_SHOWN]
    shown["file"] = upload.name
    request.session[f"import_report_{campaign.pk}"] = shown
    level = messages.success if report.imported else messages.warning
    level(request, f"Imported {report.imported} new lead{'s' if report.imported != 1 else ''} from {upload.name}; "
                   "they are enriched and scored by the next cycle.")
    return redirect("campaign-leads", pk=campaign.pk)
