"""Campaign endpoints (SPEC §5): list, create, detail, edit, pause, resume, run a cycle."""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import generics, permissions, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from cam_project.api import Pagination, require_perm, run_permissions
from campaigns.runs import cycle_start, lease_state, run_state
from campaigns.models import CHANNELS, Campaign, CycleLease, CycleRun
from campaigns.services import (
    EDITABLE_FIELDS,
    Refused,
    campaign_archive,
    campaign_create,
    campaign_metrics,
    campaign_pause,
    campaign_resume,
    campaign_unarchive,
    campaign_update,
    campaigns_with_metrics,
)
from leads.credits import credits_summary
from outreach.attention import attempts_needing_attention
from outreach.limits import outreach_today
from outreach.models import Mailbox

class CampaignListSerializer(serializers.ModelSerializer):
    """A campaign from campaigns_with_metrics()."""

    current_leads = serializers.IntegerField(source="metrics.total_leads")
    qualified_leads = serializers.IntegerField(source="metrics.qualified_leads")
    conversion_rate = serializers.FloatField(source="metrics.conversion_rate")
    goal_progress = serializers.FloatField(source="metrics.goal_progress")

    class Meta:
        model = Campaign
        fields = ["id", "name", "active", "live", "target_niche", "service_key", "target_clients", "current_leads",
                  "qualified_leads", "conversion_rate", "goal_progress"]
        read_only_fields = fields


class CampaignWriteSerializer(serializers.ModelSerializer):
    channels_enabled = serializers.ListField(
        child=serializers.ChoiceField(choices=CHANNELS), min_length=1, max_length=len(CHANNELS), required=False
    )

    mailboxes = serializers.PrimaryKeyRelatedField(
        many=True, queryset=Mailbox.objects.all(), required=False,
        help_text="Mailboxes it sends through (ids); none: the environment's EMAIL_* settings.")

    class Meta:
        model = Campaign
        fields = [*EDITABLE_FIELDS, "mailboxes"]
        extra_kwargs = {"live": {"help_text": "Scheduled cycles send real email (true) or run dry (false). "
                                              "Refused (400) without a postal address."}}

    def validate_channels_enabled(self, channels):
        return list(dict.fromkeys(channels))


class MetricsSerializer(serializers.Serializer):
    total_leads = serializers.IntegerField()
    new_leads = serializers.IntegerField()
    enriched_leads = serializers.IntegerField()
    contacted_leads = serializers.IntegerField()
    replied_leads = serializers.IntegerField()
    qualified_leads = serializers.IntegerField()
    lost_leads = serializers.IntegerField()
    ever_contacted = serializers.IntegerField(help_text="Leads that got at least one email, whatever their status now.")
    conversion_rate = serializers.FloatField()
    goal_progress = serializers.FloatField()


class ProviderCreditsSerializer(serializers.Serializer):
    today = serializers.IntegerField(help_text="Credits used today (TIME_ZONE), counting calls under way")
    total = serializers.IntegerField()
    budget_per_day = serializers.IntegerField()


class CreditsSerializer(serializers.Serializer):
    apollo = ProviderCreditsSerializer()
    dropcontact = ProviderCreditsSerializer()


class TodayOutreachSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    claimed = serializers.IntegerField(help_text="Sends interrupted or in progress: never retried.")
    unknown = serializers.IntegerField(help_text="Sends whose outcome is unknown: never retried.")
    not_sent = serializers.IntegerField(help_text="Claimed or unknown sends staff resolved as not sent.")


class CycleRunSerializer(serializers.ModelSerializer):
    duration_seconds = serializers.FloatField(allow_null=True, help_text="Null while it runs or if it was killed.")
    state = serializers.SerializerMethodField(help_text="finished, running, or interrupted (killed before the end).")
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = CycleRun
        fields = ["id", "campaign", "trigger", "dry_run", "state", "started_at", "finished_at", "duration_seconds",
                  "sent", "failed", "unknown", "error_count", "requested_by", "holder", "result"]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=["finished", "running", "interrupted"]))
    def get_state(self, run) -> str:
        leases = self.context.setdefault("leases", {})
        if run.campaign_id not in leases:
            leases[run.campaign_id] = CycleLease.objects.filter(pk=run.campaign_id).first()
        return run_state(run, leases[run.campaign_id], self.context.get("now") or timezone.now())


class CampaignDetailSerializer(serializers.ModelSerializer):
    channels_enabled = serializers.ListField(child=serializers.ChoiceField(choices=CHANNELS), read_only=True)
    sender_email = serializers.CharField(read_only=True, help_text="From address; empty means DEFAULT_FROM_EMAIL.")
    metrics = serializers.SerializerMethodField()
    today_outreach = serializers.SerializerMethodField()
    needs_attention = serializers.SerializerMethodField(
        help_text="Sends left claimed or unknown, any day: list them with attempts?status=claimed,unknown.")
    last_run = serializers.SerializerMethodField(help_text="The latest cycle, as in runs; null before the first.")
    lease = serializers.SerializerMethodField(help_text="Who runs the campaign's cycle now: \"free\" or the holder.")
    credits = serializers.SerializerMethodField(help_text="Apollo and Dropcontact credits used today and in all.")
    mailboxes = serializers.PrimaryKeyRelatedField(many=True, read_only=True,
                                                   help_text="Mailboxes it sends through; empty: EMAIL_* settings.")

    class Meta:
        model = Campaign
        fields = ["id", "name", "active", "live", "live_since", "description", "target_niche", "service_key",
                  "target_clients", "target_mrr", "channels_enabled", "max_emails_per_day", "created_at", "paused_at",
                  "pause_reason", "sender_name", "sender_email", "postal_address", "qualification_threshold",
                  "max_attempts_per_lead", "apollo_credits_per_day", "dropcontact_credits_per_day", "timezone",
                  "lawful_basis", "lawful_basis_note", "qualify_on", "stop_company_on_reply", "archived_at", "mailboxes", "metrics", "today_outreach", "needs_attention",
                  "last_run", "lease", "credits"]
        read_only_fields = fields

    @extend_schema_field(CycleRunSerializer(allow_null=True))
    def get_last_run(self, campaign) -> dict | None:
        run = campaign.runs.order_by("-started_at", "-id").first()
        return CycleRunSerializer(run, context={"now": timezone.now()}).data if run else None

    def get_lease(self, campaign) -> str:
        return lease_state(CycleLease.objects.filter(pk=campaign.pk).first(), timezone.now())

    def get_needs_attention(self, campaign) -> int:
        return attempts_needing_attention(campaign=campaign).count()

    @extend_schema_field(MetricsSerializer)
    def get_metrics(self, campaign) -> dict:
        return campaign_metrics(campaign=campaign).as_dict()

    @extend_schema_field(CreditsSerializer)
    def get_credits(self, campaign) -> dict:
        return credits_summary(campaign=campaign, now=timezone.now())

    @extend_schema_field(TodayOutreachSerializer)
    def get_today_outreach(self, campaign) -> dict:
        return outreach_today(campaign=campaign, now=timezone.now())


class CampaignActionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    active = serializers.BooleanField()
    message = serializers.CharField()


def _action_response(campaign: Campaign, message: str, code=status.HTTP_200_OK) -> Response:
    return Response({"id": campaign.pk, "name": campaign.name, "active": campaign.active, "message": message},
                    status=code)


class CampaignListView(APIView):
    queryset = Campaign.objects.all()

    @extend_schema(responses=CampaignListSerializer(many=True), summary="List campaigns with their progress")
    def get(self, request):
        campaigns = campaigns_with_metrics(Campaign.objects.order_by("id"))
        return Response(CampaignListSerializer(campaigns, many=True).data)

    @extend_schema(request=CampaignWriteSerializer, responses={201: CampaignActionSerializer}, summary="Create a campaign")
    def post(self, request):
        serializer = CampaignWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data.get("live"):  # sending for real needs change_campaign (SPEC §7)
            require_perm(request, "campaigns.change_campaign")
        try:
            campaign = campaign_create(data=serializer.validated_data, now=timezone.now())
        except Refused as exc:
            raise ValidationError({"live": [str(exc)]}) from None
        return _action_response(campaign, "Campaign created successfully", status.HTTP_201_CREATED)


class CampaignDetailView(APIView):
    queryset = Campaign.objects.all()

    @extend_schema(responses=CampaignDetailSerializer, summary="A campaign with its metrics and today's outreach")
    def get(self, request, pk):
        return Response(CampaignDetailSerializer(get_object_or_404(Campaign, pk=pk)).data)

    @extend_schema(request=CampaignWriteSerializer, responses=CampaignDetailSerializer, summary="Edit a campaign")
    def patch(self, request, pk):
        campaign = get_object_or_404(Campaign, pk=pk)
        serializer = CampaignWriteSerializer(campaign, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            campaign = campaign_update(campaign=campaign, data=serializer.validated_data, now=timezone.now())
        except Refused as exc:
            raise ValidationError({"live": [str(exc)]}) from None
        return Response(CampaignDetailSerializer(campaign).data)


class PauseSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300, required=False, help_text="Kept for staff to see.")


class CampaignPauseView(APIView):
    queryset = Campaign.objects.all()

    @extend_schema(request=PauseSerializer, responses=CampaignActionSerializer, summary="Pause a campaign")
    def put(self, request, pk):
        campaign = get_object_or_404(Campaign, pk=pk)
        body = PauseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reason = body.validated_data.get("reason") or f"paused by {request.user}"
        campaign_pause(campaign=campaign, reason=reason, now=timezone.now())
        return _action_response(campaign, "Campaign paused")


class CampaignResumeView(APIView):
    queryset = Campaign.objects.all()

    @extend_schema(request=None, responses=CampaignActionSerializer, summary="Resume a campaign")
    def put(self, request, pk):
        campaign = get_object_or_404(Campaign, pk=pk)
        campaign_resume(campaign=campaign, now=timezone.now())
        return _action_response(campaign, "Campaign resumed")


class CampaignArchiveView(APIView):
    queryset = Campaign.objects.all()

    @extend_schema(request=None, responses=CampaignActionSerializer,
                   summary="Archive a campaign: paused, hidden from the dashboard and from every cycle, kept")
    def put(self, request, pk):
        campaign = get_object_or_404(Campaign, pk=pk)
        campaign = campaign_archive(campaign=campaign, now=timezone.now())
        return _action_response(campaign, "Campaign archived")


class CampaignUnarchiveView(APIView):
    queryset = Campaign.objects.all()

    @extend_schema(request=None, responses=CampaignActionSerializer,
                   summary="Unarchive a campaign (it stays paused until resumed)")
    def put(self, request, pk):
        campaign = get_object_or_404(Campaign, pk=pk)
        campaign_unarchive(campaign=campaign)
        return _action_response(campaign, "Campaign unarchived: resume it to run it")


class CycleResultSerializer(serializers.Serializer):
    campaign_id = serializers.IntegerField()
    campaign_name = serializers.CharField()
    dry_run = serializers.BooleanField()
    leads_discovered = serializers.IntegerField()
    leads_enriched = serializers.IntegerField()
    outreach_sent = serializers.IntegerField(help_text="In a dry run: what would be sent.")
    outreach_failed = serializers.IntegerField()
    outreach_skipped = serializers.IntegerField()
    campaign_paused = serializers.BooleanField()
    pause_reason = serializers.CharField(allow_null=True)
    errors = serializers.ListField(child=serializers.CharField())
    notes = serializers.ListField(child=serializers.CharField())
    leads_lost = serializers.IntegerField()
    previews = serializers.ListField(child=serializers.DictField(), help_text="Dry run: who would get which step, with its subject and body.")
    outreach_unknown = serializers.IntegerField()
    outreach_waiting = serializers.IntegerField(
        help_text="Of the skipped: due leads whose mail waits for a mailbox's window, gap or cap (the send task "
                  "sends them once allowed).")
    stopped_phases = serializers.ListField(child=serializers.CharField())
    run_id = serializers.IntegerField(allow_null=True, help_text="The run recorded (GET …/runs); null when already running.")
    already_running = serializers.BooleanField(help_text="Another cycle of the campaign holds its lease: nothing was done (409).")


class RunCycleQuery(serializers.Serializer):
    dry_run = serializers.BooleanField(default=True)


class CampaignRunCycleView(APIView):
    # A dry run needs view_campaign, a live run change_campaign: checked in post().
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        request=None,
        parameters=[OpenApiParameter("dry_run", OpenApiTypes.BOOL, default=True,
                                     description="true needs leads.add_lead (a dry run discovers leads); false sends real email and "
                                                 "needs campaigns.change_campaign")],
        responses={200: CycleResultSerializer, 409: CycleResultSerializer},
        summary="Run one cycle of the campaign now (dry run unless dry_run=false)",
    )
    def post(self, request, pk):
        require_perm(request, "campaigns.view_campaign")
        campaign = get_object_or_404(Campaign, pk=pk)
        if len(request.query_params.getlist("dry_run")) > 1:
            # ?dry_run=true&dry_run=false must not quietly send email.
            raise ValidationError({"dry_run": ["Give dry_run once."]})
        query = RunCycleQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        dry_run = query.validated_data["dry_run"]
        for perm in reversed(run_permissions(dry_run)):
            require_perm(request, perm)
        result = cycle_start(campaign=campaign, trigger=CycleRun.Trigger.API, dry_run=dry_run, user=request.user)
        # Another cycle of the campaign holds its lease: nothing was done (409, same result object).
        code = status.HTTP_409_CONFLICT if result.already_running else status.HTTP_200_OK
        return Response(result.as_dict(), status=code)


class CampaignRunsView(generics.ListAPIView):
    """The campaign's cycles, newest first (SPEC §7)."""

    serializer_class = CycleRunSerializer
    pagination_class = Pagination
    queryset = CycleRun.objects.all()  # ModelPermissions: reading runs needs campaigns.view_cyclerun

    def get_queryset(self):
        campaign = get_object_or_404(Campaign, pk=self.kwargs["pk"])
        return campaign.runs.select_related("requested_by").order_by("-started_at", "-id")

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "now": timezone.now()}

    @extend_schema(summary="The campaign's cycle runs, newest first (paginated)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
