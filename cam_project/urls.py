from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from cam_project.api import IdConverter
from campaigns import api as campaigns_api
from campaigns import views as console
from leads import api as leads_api
from leads import views as leads_console
from outreach import api as outreach_api
from outreach import inbound_api, mailboxes_api
from outreach import inbox_views, unsubscribe_views
from outreach.webhooks import guarded_anymail_urls
from outreach import views as outreach_console

register_converter(IdConverter, "id")

# Paths have no trailing slash: API clients are written against the original curl examples.
api = [
    path("campaigns", campaigns_api.CampaignListView.as_view(), name="api-campaigns"),
    path("campaigns/<id:pk>", campaigns_api.CampaignDetailView.as_view(), name="api-campaign"),
    path("campaigns/<id:pk>/pause", campaigns_api.CampaignPauseView.as_view(), name="api-campaign-pause"),
    path("campaigns/<id:pk>/resume", campaigns_api.CampaignResumeView.as_view(), name="api-campaign-resume"),
    path("campaigns/<id:pk>/archive", campaigns_api.CampaignArchiveView.as_view(), name="api-campaign-archive"),
    path("campaigns/<id:pk>/unarchive", campaigns_api.CampaignUnarchiveView.as_view(), name="api-campaign-unarchive"),
    path("campaigns/<id:pk>/run-cycle", campaigns_api.CampaignRunCycleView.as_view(), name="api-campaign-run-cycle"),
    path("campaigns/<id:pk>/runs", campaigns_api.CampaignRunsView.as_view(), name="api-campaign-runs"),
    path("campaigns/<id:pk>/leads", leads_api.CampaignLeadsView.as_view(), name="api-campaign-leads"),
    path("campaigns/<id:pk>/attempts", outreach_api.CampaignAttemptsView.as_view(), name="api-campaign-attempts"),
    path("leads/<id:pk>", leads_api.LeadDetailView.as_view(), name="api-lead"),
    path("leads/<id:pk>/resume", leads_api.LeadResumeView.as_view(), name="api-lead-resume"),
    path("leads/<id:pk>/events", leads_api.LeadEventsView.as_view(), name="api-lead-events"),
    path("imports/<id:pk>", leads_api.ImportJobView.as_view(), name="api-import"),
    path("attempts/<id:pk>/resolve", outreach_api.AttemptResolveView.as_view(), name="api-attempt-resolve"),
    path("suppressions", outreach_api.SuppressionsView.as_view(), name="api-suppressions"),
    path("erasure", outreach_api.ErasureView.as_view(), name="api-erasure"),
    path("mailboxes", mailboxes_api.MailboxListView.as_view(), name="api-mailboxes"),
    path("mailboxes/<id:pk>", mailboxes_api.MailboxDetailView.as_view(), name="api-mailbox"),
    path("mailboxes/<id:pk>/test", mailboxes_api.MailboxTestView.as_view(), name="api-mailbox-test"),
    path("inbound", inbound_api.InboundListView.as_view(), name="api-inbound"),
    path("inbound/<id:pk>", inbound_api.InboundDetailView.as_view(), name="api-inbound-message"),
    path("suppressions/<id:pk>", outreach_api.SuppressionDetailView.as_view(), name="api-suppression"),
]

urlpatterns = [
    path("", console.dashboard, name="dashboard"),
    path("campaigns/new", console.campaign_new, name="campaign-new"),
    path("campaigns/<id:pk>", console.campaign_detail, name="campaign-detail"),
    path("campaigns/<id:pk>/edit", console.campaign_edit, name="campaign-edit"),
    path("campaigns/<id:pk>/steps", console.campaign_steps_edit, name="campaign-steps"),
    path("campaigns/<id:pk>/steps/preview", console.campaign_step_preview, name="campaign-step-preview"),
    path("campaigns/<id:pk>/steps/test", console.campaign_step_test_send, name="campaign-step-test"),
    path("campaigns/<id:pk>/run", console.campaign_run, name="campaign-run"),
    path("campaigns/<id:pk>/live", console.campaign_live_view, name="campaign-live"),
    path("campaigns/<id:pk>/pause", console.campaign_pause_view, name="campaign-pause"),
    path("campaigns/<id:pk>/resume", console.campaign_resume_view, name="campaign-resume"),
    path("campaigns/<id:pk>/archive", console.campaign_archive_view, name="campaign-archive"),
    path("campaigns/<id:pk>/leads", leads_console.campaign_leads, name="campaign-leads"),
    path("campaigns/<id:pk>/leads.csv", leads_console.campaign_leads_csv, name="campaign-leads-csv"),
    path("campaigns/<id:pk>/sends.csv", outreach_console.campaign_attempts_csv, name="campaign-attempts-csv"),
    path("campaigns/<id:pk>/sources/apollo/new", leads_console.apollo_source_new, name="apollo-source-new"),
    path("sources/<id:pk>/apollo", leads_console.apollo_source_edit, name="apollo-source-edit"),
    path("sources/<id:pk>/active", leads_console.source_switch_view, name="source-switch"),
    path("leads/<id:pk>", leads_console.lead_detail, name="lead-detail"),
    path("leads/<id:pk>/action", leads_console.lead_action, name="lead-action"),
    path("imports/<id:pk>", leads_console.import_detail, name="import-detail"),
    path("attempts/<id:pk>/resolve", outreach_console.attempt_resolve_view, name="attempt-resolve"),
    path("mailboxes", outreach_console.mailbox_list, name="mailboxes"),
    path("mailboxes/new", outreach_console.mailbox_new, name="mailbox-new"),
    path("mailboxes/<id:pk>", outreach_console.mailbox_edit, name="mailbox-edit"),
    path("mailboxes/<id:pk>/test", outreach_console.mailbox_test_view, name="mailbox-test"),
    path("inbox", inbox_views.inbox, name="inbox"),
    path("campaigns/<id:pk>/inbox", inbox_views.inbox, name="campaign-inbox"),
    path("inbound/<id:pk>", inbox_views.inbound_change, name="inbound-change"),
    path("u/<str:token>", unsubscribe_views.unsubscribe, name="unsubscribe"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/cam/", include(api)),
    # ESP webhooks (anymail): anymail/<esp>/tracking/ and anymail/<esp>/inbound/, refused without
    # CAM_WEBHOOK_SECRET.
    path("anymail/", include(guarded_anymail_urls())),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]

handler400 = "cam_project.api.bad_request"
handler403 = "cam_project.api.permission_denied"
handler404 = "cam_project.api.not_found"
handler500 = "cam_project.api.internal_error"
