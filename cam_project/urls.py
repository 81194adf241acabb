from django.contrib import admin
from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from cam_project.api import IdConverter
from campaigns import api as campaigns_api
from leads import api as leads_api
from outreach import api as outreach_api

register_converter(IdConverter, "id")

# Paths have no trailing slash: API clients are written against the original curl examples.
api = [
    path("campaigns", campaigns_api.CampaignListView.as_view(), name="campaigns"),
    path("campaigns/<id:pk>", campaigns_api.CampaignDetailView.as_view(), name="campaign"),
    path("campaigns/<id:pk>/pause", campaigns_api.CampaignPauseView.as_view(), name="campaign-pause"),
    path("campaigns/<id:pk>/resume", campaigns_api.CampaignResumeView.as_view(), name="campaign-resume"),
    path("campaigns/<id:pk>/run-cycle", campaigns_api.CampaignRunCycleView.as_view(), name="campaign-run-cycle"),
    path("campaigns/<id:pk>/leads", leads_api.CampaignLeadsView.as_view(), name="campaign-leads"),
    path("campaigns/<id:pk>/attempts", outreach_api.CampaignAttemptsView.as_view(), name="campaign-attempts"),
    path("leads/<id:pk>", leads_api.LeadDetailView.as_view(), name="lead"),
    path("suppressions", outreach_api.SuppressionsView.as_view(), name="suppressions"),
    path("suppressions/<id:pk>", outreach_api.SuppressionDetailView.as_view(), name="suppression"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/cam/", include(api)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]

handler404 = "cam_project.api.not_found"
handler500 = "cam_project.api.internal_error"
