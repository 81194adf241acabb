"""The dashboard's campaigns (the console's home page): searched, filtered and sorted in the
database, so a page costs the same whatever the number of campaigns; and the totals."""

from django.db.models import Count, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from campaigns.models import Campaign, CycleRun
from leads.models import Lead

DASHBOARD_PAGE = 25
DASHBOARD_STATES = {"": "Active and paused", "active": "Active", "paused": "Paused", "archived": "Archived",
                    "all": "All, archived too"}
DASHBOARD_SORTS = {"recent": "Newest first", "name": "Name", "progress": "Goal progress", "last_run": "Last run"}


def dashboard_choice(params) -> dict:
    """What the dashboard's form asked for, each value one it knows (anything else: the default)."""
    state, sort = params.get("state", ""), params.get("sort", "recent")
    return {"q": params.get("q", "").strip()[:100].replace("\x00", ""),
            "state": state if state in DASHBOARD_STATES else "",
            "sort": sort if sort in DASHBOARD_SORTS else "recent"}


def dashboard_campaigns(*, q: str, state: str, sort: str):
    campaigns = Campaign.objects.all()
    if state == "archived":
        campaigns = campaigns.exclude(archived_at=None)
    elif state != "all":
        campaigns = campaigns.filter(archived_at=None)
    if state == "active":
        campaigns = campaigns.filter(active=True)
    elif state == "paused":
        campaigns = campaigns.filter(active=False)
    if q:
        campaigns = campaigns.filter(name__icontains=q)
    if sort == "progress":
        qualified = (Lead.objects.filter(campaign=OuterRef("pk"), status=Lead.Status.QUALIFIED).order_by()
                     .values("campaign").annotate(n=Count("pk")).values("n"))
        campaigns = campaigns.annotate(
            progress_key=Coalesce(Subquery(qualified), 0) * 1.0 / F("target_clients")
        ).order_by("-progress_key", "name", "pk")
    elif sort == "last_run":
        latest = CycleRun.objects.filter(campaign=OuterRef("pk")).order_by("-started_at").values("started_at")[:1]
        campaigns = campaigns.annotate(last_run_at=Subquery(latest)).order_by(
            F("last_run_at").desc(nulls_last=True), "name", "pk")
    elif sort == "name":
        campaigns = campaigns.order_by("name", "pk")
    else:
        campaigns = campaigns.order_by("-active", "-created_at", "-pk")
    return campaigns.only("pk")


def dashboard_totals() -> dict:
    """Totals of the campaigns not archived."""
    counts = Campaign.objects.filter(archived_at=None).aggregate(campaigns=Count("pk"),
                                                                 active=Count("pk", filter=Q(active=True)))
    leads = Lead.objects.filter(campaign__archived_at=None).aggregate(
        leads=Count("pk"), qualified=Count("pk", filter=Q(status=Lead.Status.QUALIFIED)))
    return {**counts, **leads}
