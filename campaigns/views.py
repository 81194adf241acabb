"""The operator console: dashboard, campaign detail (with its actions) and the create form.

Views are thin: they read through the services and selectors, and write only through the same
services as the API and the admin.
"""

from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from cam_project.api import run_permissions
from campaigns.dashboard import (
    DASHBOARD_PAGE,
    DASHBOARD_SORTS,
    DASHBOARD_STATES,
    dashboard_campaigns,
    dashboard_choice,
    dashboard_totals,
)
from campaigns.models import CHANNELS, Campaign, CycleLease, CycleRun, MessageStep
from campaigns.runs import cycle_start, last_runs, lease_state, run_state
from campaigns.steps import steps_save
from campaigns.trends import SERIES, campaign_trends
from campaigns.services import (
    campaign_archive,
    campaign_unarchive,
    EDITABLE_FIELDS,
    Refused,
    campaign_create,
    campaign_metrics,
    campaign_pause,
    campaign_resume,
    campaign_update,
    campaigns_with_metrics,
    postal_address,
)
from leads.credits import credits_summary
from leads.models import Lead
from outreach.models import Mailbox, OutreachAttempt
from outreach.attention import attempts_needing_attention, in_flight_window
from outreach.limits import mailbox_today, outreach_today, sends_per_day
from outreach.messages import TEMPLATE_VARIABLES
from outreach.preview import step_preview, step_test_send
from outreach.transport import MailServerDown, MessageProblem

ATTENTION_SHOWN = 50
FUNNEL = [Lead.Status.NEW, Lead.Status.ENRICHED, Lead.Status.CONTACTED, Lead.Status.REPLIED,
          Lead.Status.QUALIFIED, Lead.Status.LOST]


def mail_mode() -> str:
    """Where a live run's mail would go, shown on every page."""
    if settings.EMAIL_HOST:
        return f"SMTP {settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
    return "files in var/mail (nothing leaves this machine)"


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def _progress(metrics) -> float:
    """Goal progress for a progress bar: a percentage, full at 100."""
    return min(round(100 * metrics.goal_progress, 1), 100)


def _trend_lines(days: list[dict]) -> dict:
    """The trend chart's polylines in its 600 × 100 drawing area: one per series, on one scale."""
    tallest = max([day[name] for day in days for name in SERIES] + [1])
    step = 600 / max(len(days) - 1, 1)
    return {
        "tallest": tallest,
        "series": [{"name": name, "points": " ".join(f"{i * step:.1f},{100 - 100 * day[name] / tallest:.1f}"
                                                     for i, day in enumerate(days))} for name in SERIES],
        "labels": [{"x": round(i * step, 1), "day": day["day"]} for i, day in enumerate(days) if i % 5 == 0],
    }


RECENT_RUNS = 10


@login_required
@permission_required("campaigns.view_campaign", raise_exception=True)
def dashboard(request):
    """Totals, then the campaigns a page at a time: searched by name, filtered by state, sorted
    by creation, name, goal progress or last run. Its cost does not grow with the number of
    campaigns (one page's metrics; the totals and the sort keys are aggregates in the database)."""
    choice = dashboard_choice(request.GET)
    found = dashboard_campaigns(**choice)
    page = Paginator(found, DASHBOARD_PAGE).get_page(request.GET.get("page"))
    on_page = {c.pk: c for c in campaigns_with_metrics(Campaign.objects.filter(pk__in=[c.pk for c in page]))}
    runs = last_runs(list(on_page))
    campaigns = [on_page[c.pk] for c in page]
    for campaign in campaigns:
        campaign.progress = _progress(campaign.metrics)
        campaign.last_run = runs.get(campaign.pk)
    return render(request, "console/dashboard.html", {
        "campaigns": campaigns, "page": page, "totals": dashboard_totals(), **choice,
        "states": DASHBOARD_STATES, "sorts": DASHBOARD_SORTS,
        "query": urlencode({k: v for k, v in choice.items() if v}),
    })


@login_required
@permission_required("campaigns.view_campaign", raise_exception=True)
def campaign_detail(request, pk):
    campaign = get_object_or_404(Campaign, pk=pk)
    now = timezone.now()
    metrics = campaign_metrics(campaign=campaign)
    counts = {status: getattr(metrics, f"{status.lower()}_leads") for status in FUNNEL}
    widest = max([*counts.values(), 1])
    funnel = [
        {"status": status, "label": status.label, "count": count, "width": _percent(count, widest)}
        for status, count in counts.items()
    ]
    days = sends_per_day(campaign=campaign, now=now)
    tallest = max([d["sent"] + d["failed"] for d in days] + [1])
    for i, day in enumerate(days):  # bar geometry in the chart's 280 × 100 drawing area
        day["x"], day["label_x"] = i * 20 + 3, i * 20 + 10
        day["sent_h"] = round(100 * day["sent"] / tallest, 1)
        day["failed_h"] = round(100 * day["failed"] / tallest, 1)
        day["sent_y"] = round(100 - day["sent_h"], 1)
        day["failed_y"] = round(day["sent_y"] - day["failed_h"], 1)
    attempts = OutreachAttempt.objects.filter(campaign=campaign).select_related("lead").order_by("-created_at", "-id")[:15]
    attention = list(attempts_needing_attention(campaign=campaign)[:ATTENTION_SHOWN])
    lease = CycleLease.objects.filter(pk=campaign.pk).first()
    runs = list(campaign.runs.select_related("requested_by").order_by("-started_at", "-id")[:RECENT_RUNS])
    for run in runs:
        run.state = run_state(run, lease, now)
    trends = campaign_trends(campaign=campaign, now=now)
    trends["lines"] = _trend_lines(trends["days"])
    return render(request, "console/campaign_detail.html", {
        "trends": trends,
        "campaign": campaign,
        "metrics": metrics,
        "progress": _progress(metrics),
        "funnel": funnel,
        "days": days,
        "tallest": tallest,
        "today": outreach_today(campaign=campaign, now=now),
        "attempts": attempts,
        "attention": attention,
        "attention_total": len(attention) if len(attention) < ATTENTION_SHOWN
        else attempts_needing_attention(campaign=campaign).count(),
        "resolvable_after": now - in_flight_window(),
        "runs": runs,
        "lease": lease_state(lease, now),
        "postal_address": postal_address(campaign),
        "mailboxes": [{"mailbox": box, "today": mailbox_today(mailbox=box, now=now)}
                      for box in campaign.mailboxes.order_by("name")],
        "credits": credits_summary(campaign=campaign, now=now),
        "live_form": LiveForm(initial={"postal_address": campaign.postal_address}),
        "result": request.session.pop(f"cycle_result_{campaign.pk}", None),
    })


class CampaignForm(forms.ModelForm):
    """The API's rules (model validators), with errors shown next to their fields."""

    channels_enabled = forms.MultipleChoiceField(
        choices=[(c, c.title()) for c in CHANNELS], initial=["email"], widget=forms.CheckboxSelectMultiple,
        label="Channels",
    )

    mailboxes = forms.ModelMultipleChoiceField(
        queryset=Mailbox.objects.order_by("name"), required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: mail goes through the server in the environment (EMAIL_*).",
    )

    class Meta:
        model = Campaign
        # Going live is done on the campaign's page, where it is confirmed.
        fields = [name for name in EDITABLE_FIELDS if name != "live"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3}), "postal_address": forms.Textarea(attrs={"rows": 2}),
                   "lawful_basis_note": forms.Textarea(attrs={"rows": 2}), "qualify_on": forms.RadioSelect}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, label_suffix="", **kwargs)
        for name in (*CREDIT_BUDGETS, "lawful_basis", "qualify_on"):  # blank: the defaults
            self.fields[name].required = False

    def clean(self):
        cleaned = super().clean()
        for name in (*CREDIT_BUDGETS, "lawful_basis", "qualify_on"):
            if cleaned.get(name) in (None, "") and name not in self.errors:
                cleaned[name] = Campaign._meta.get_field(name).default
        return cleaned


CREDIT_BUDGETS = ("apollo_credits_per_day", "dropcontact_credits_per_day")


@login_required
@permission_required("campaigns.add_campaign", raise_exception=True)
def campaign_new(request):
    form = CampaignForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        campaign = campaign_create(data=form.cleaned_data, now=timezone.now())  # never live: see the Meta
        messages.success(request, f"Campaign “{campaign.name}” created. Add leads to get it going.")
        return redirect("campaign-detail", pk=campaign.pk)
    return render(request, "console/campaign_form.html", {"form": form})


@login_required
@permission_required("campaigns.change_campaign", raise_exception=True)
def campaign_edit(request, pk):
    """Everything the API's PATCH takes but the live switch (the campaign page asks for that
    with a confirmation), with the same validation, through the same service."""
    campaign = get_object_or_404(Campaign, pk=pk)
    form = CampaignForm(request.POST or None, instance=campaign,
                        initial={"mailboxes": list(campaign.mailboxes.values_list("pk", flat=True))})
    if request.method == "POST" and form.is_valid():
        try:
            campaign_update(campaign=campaign, data=form.cleaned_data, now=timezone.now())
        except Refused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Campaign saved.")
            return redirect("campaign-detail", pk=pk)
    return render(request, "console/campaign_form.html", {"form": form, "campaign": campaign})


class StepForm(forms.ModelForm):
    """One step of the sequence editor: its place is its order in the list (`order`)."""

    order = forms.IntegerField(min_value=1, max_value=999, label="Order",
                               help_text="Steps are sent in this order (1 first); renumbered 1, 2, 3… on save.")

    class Meta:
        model = MessageStep
        fields = ["delay_days", "subject_template", "body_template"]
        widgets = {"body_template": forms.Textarea(attrs={"rows": 8, "class": "template"})}
        labels = {"delay_days": "Days after the previous email", "subject_template": "Subject",
                  "body_template": "Body"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial.setdefault("order", self.instance.position)

    def validate_unique(self):
        """Positions are given on save (steps_save), not by this form."""


class BaseStepFormSet(forms.BaseInlineFormSet):
    def sequence(self) -> list[dict]:
        """The steps to keep, in their order, as steps_save takes them: filled forms not marked
        for removal (an untouched empty form has no data); ties keep the older step first."""
        kept = [form for form in self.forms if form.cleaned_data and not form.cleaned_data.get("DELETE")]
        kept.sort(key=lambda form: (form.cleaned_data["order"], form.instance.pk or 10**9))
        return [{"id": form.instance.pk, **{name: form.cleaned_data[name] for name in StepForm.Meta.fields}}
                for form in kept]


StepFormSet = forms.inlineformset_factory(Campaign, MessageStep, form=StepForm, formset=BaseStepFormSet, extra=1,
                                          can_delete=True, max_num=20, validate_max=True)


@login_required
@permission_required("campaigns.change_campaign", raise_exception=True)
def campaign_steps_edit(request, pk):
    """The sequence editor: every step's delay, subject and body, their order, a new one, and
    removing one; saved all at once through steps_save, with the templates checked first."""
    campaign = get_object_or_404(Campaign, pk=pk)
    steps = MessageStep.objects.filter(campaign=campaign).order_by("position")
    formset = StepFormSet(request.POST or None, instance=campaign, queryset=steps,
                          initial=[{"order": steps.count() + 1}])
    if request.method == "POST" and formset.is_valid():
        saved = steps_save(campaign=campaign, steps=formset.sequence())
        messages.success(request, f"Sequence saved: {len(saved)} step{'s' if len(saved) != 1 else ''}.")
        return redirect("campaign-steps", pk=pk)
    return render(request, "console/steps.html", {
        "campaign": campaign, "formset": formset, "variables": TEMPLATE_VARIABLES,
        "preview_leads": Lead.objects.filter(campaign=campaign).order_by("-score", "id")[:50],
    })


def _step_as_posted(request, campaign) -> dict:
    """The step the editor posts (its templates as typed, the lead picked), as step_preview and
    step_test_send take it; a lead of another campaign is no lead (the fallbacks)."""
    lead_id = request.POST.get("lead", "")
    return {
        "campaign": campaign, "subject_template": request.POST.get("subject_template", "")[:300],
        "body_template": request.POST.get("body_template", "")[:20_000],
        "lead": Lead.objects.filter(campaign=campaign, pk=lead_id).first() if lead_id.isdigit() else None,
    }


@require_POST
@login_required
@permission_required("campaigns.change_campaign", raise_exception=True)
def campaign_step_preview(request, pk):
    """The sequence editor's live preview (JSON): the step being written, for the lead chosen."""
    campaign = get_object_or_404(Campaign, pk=pk)
    return JsonResponse(step_preview(**_step_as_posted(request, campaign)).as_dict())


@require_POST
@login_required
@permission_required("campaigns.change_campaign", raise_exception=True)
def campaign_step_test_send(request, pk):
    """"Send a test to me": the step as the chosen lead would get it, to the logged-in user's own
    address, through the campaign's mailbox. Never an attempt, never to a lead."""
    campaign = get_object_or_404(Campaign, pk=pk)
    if not request.user.email:
        return JsonResponse({"sent": False, "detail": "Your user has no email address: add one in your profile."},
                            status=400)
    try:
        said = step_test_send(**_step_as_posted(request, campaign), to=request.user.email)
    except (MessageProblem, MailServerDown) as exc:
        return JsonResponse({"sent": False, "detail": f"Not sent: {exc}"}, status=400)
    return JsonResponse({"sent": True, "detail": f"Test {said}."})


class LiveForm(forms.Form):
    live = forms.BooleanField(required=False)
    postal_address = forms.CharField(required=False, max_length=500, widget=forms.Textarea(attrs={"rows": 2}))
    confirmed = forms.BooleanField(required=False)


@require_POST
@login_required
@permission_required("campaigns.change_campaign", raise_exception=True)
def campaign_live_view(request, pk):
    """Switch scheduled sending on (confirmed on the page, with where the mail goes) or off."""
    campaign = get_object_or_404(Campaign, pk=pk)
    form = LiveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Nothing changed: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("campaign-detail", pk=pk)
    live = form.cleaned_data["live"]
    if live and not form.cleaned_data["confirmed"]:
        messages.error(request, "Not live: tick the confirmation first. Nothing changed.")
        return redirect("campaign-detail", pk=pk)
    data = {"live": live}
    if live and "postal_address" in request.POST:
        data["postal_address"] = form.cleaned_data["postal_address"].strip()
    try:
        campaign = campaign_update(campaign=campaign, data=data, now=timezone.now())
    except Refused as exc:
        messages.error(request, f"Not live: {exc}.")
        return redirect("campaign-detail", pk=pk)
    if campaign.live:
        messages.success(request, f"LIVE: scheduled cycles now send real email, up to {campaign.max_emails_per_day} "
                                  f"a day, through {mail_mode()}.")
    else:
        messages.success(request, "Scheduled cycles of this campaign now run dry: they send nothing.")
    return redirect("campaign-detail", pk=pk)


@require_POST
@login_required
@permission_required("campaigns.change_campaign", raise_exception=True)
def campaign_pause_view(request, pk):
    campaign = get_object_or_404(Campaign, pk=pk)
    campaign_pause(campaign=campaign, reason=f"paused by {request.user}", now=timezone.now())
    messages.success(request, "Campaign paused: no cycle will touch it until you resume it.")
    return redirect("campaign-detail", pk=pk)


@require_POST
@login_required
@permission_required("campaigns.change_campaign", raise_exception=True)
def campaign_archive_view(request, pk):
    campaign = get_object_or_404(Campaign, pk=pk)
    if request.POST.get("archive") == "no":
        campaign_unarchive(campaign=campaign)
        messages.success(request, "Campaign back on the dashboard, still paused: resume it to run it.")
    else:
        campaign_archive(campaign=campaign, now=timezone.now())
        messages.success(request, "Campaign archived: paused, hidden from the dashboard and from every cycle. "
                                  "Its leads and history are kept.")
    return redirect("campaign-detail", pk=pk)


@require_POST
@login_required
@permission_required("campaigns.change_campaign", raise_exception=True)
def campaign_resume_view(request, pk):
    campaign = get_object_or_404(Campaign, pk=pk)
    try:
        campaign_resume(campaign=campaign, now=timezone.now())
    except Refused as exc:
        messages.warning(request, f"Not resumed: {exc}.")
    else:
        messages.success(request, "Campaign resumed.")
    return redirect("campaign-detail", pk=pk)


@require_POST
@login_required
@permission_required("campaigns.view_campaign", raise_exception=True)
def campaign_run(request, pk):
    """A dry run unless the box was unticked and the live run confirmed (the page asks)."""
    campaign = get_object_or_404(Campaign, pk=pk)
    if not campaign.active:
        messages.warning(request, "The campaign is paused: resume it to run a cycle.")
        return redirect("campaign-detail", pk=pk)
    dry_run = request.POST.get("dry_run") == "on"
    missing = [perm for perm in run_permissions(dry_run) if not request.user.has_perm(perm)]
    if missing:
        messages.error(request, f"This run needs the permission {', '.join(missing)}: nothing was done.")
        return redirect("campaign-detail", pk=pk)
    if not dry_run and request.POST.get("confirmed") != "yes":
        messages.error(request, "Live run not confirmed: nothing was sent.")
        return redirect("campaign-detail", pk=pk)
    result = cycle_start(campaign=campaign, trigger=CycleRun.Trigger.CONSOLE, dry_run=dry_run, user=request.user).as_dict()
    request.session[f"cycle_result_{pk}"] = result
    level, text = run_summary(result)
    getattr(messages, level)(request, text)
    return redirect("campaign-detail", pk=pk)


def run_summary(result: dict) -> tuple[str, str]:
    """What the operator reads after a run: the level and the words. A live run says "emails
    sent" only when some were; otherwise what happened instead."""
    sent, dry = result["outreach_sent"], result["dry_run"]
    plural = "s" if sent != 1 else ""
    if dry:
        head = f"Dry run: would send {sent} email{plural}; nothing was sent"
    elif sent:
        head = f"LIVE: {sent} email{plural} sent"
    else:
        head = "Live run: no email sent"
    if result.get("already_running"):
        return "warning", "Already running: another cycle of this campaign is under way; nothing was done."
    why = result["errors"][:1] or result["notes"][:1]
    if result["campaign_paused"]:
        why = [f"campaign paused: {result['pause_reason']}"]
    text = head + (f" ({why[0]})" if why and (not sent or result["errors"]) else "") + "."
    if result["errors"]:
        return "warning", f"{text} {len(result['errors'])} error(s): see the result below."
    return ("success" if sent or dry else "info"), text
