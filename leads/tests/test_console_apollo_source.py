"""An Apollo source's search edited in a form (SPEC §10), in the console and the admin: saved in
Apollo's own names and checked as the cycle checks it, with a preview of the first people it
finds that reveals, saves and counts nothing. Apollo is a local server (conftest)."""

import re

import pytest

from cam_project.testing import read_only_staff, superuser, user_with_perms
from campaigns.tests.factories import CampaignFactory
from leads.apollo_source import apollo_settings_clean, filters_key
from leads.models import ApiUsage, Lead, LeadSource
from leads.tests.factories import LeadSourceFactory
from leads.tests.test_sources import campaign_change_data

pytestmark = pytest.mark.django_db

SEARCH = "/api/v1/mixed_people/api_search"
SETTINGS = {"person_titles": ["CEO", "CTO"], "person_seniorities": ["c_suite"], "per_cycle": 25}
# What a browser posts for the form, lists as typed.
FORM = {"name": "Founders in Europe", "active": "on", "person_titles": "CEO, Head of Growth ,",
        "person_seniorities": ["c_suite", "founder"], "person_locations": "Paris, France\nBerlin\n",
        "organization_locations": "", "organization_num_employees_ranges": ["11,20", "10001,"],
        "q_keywords": "  b2b   saas ", "q_organization_domains_list": "acme.com\r\nbolt.io", "per_cycle": "40"}
SAVED = {"person_titles": ["CEO", "Head of Growth"], "person_seniorities": ["c_suite", "founder"],
         "person_locations": ["Paris, France", "Berlin"], "organization_num_employees_ranges": ["11,20", "10001,"],
         "q_keywords": "b2b saas", "q_organization_domains_list": ["acme.com", "bolt.io"], "per_cycle": 40}


@pytest.fixture
def operator(client):
    client.force_login(superuser())
    return client


def apollo_source(campaign=None, **changes):
    fields = {"name": "Apollo", "kind": LeadSource.Kind.APOLLO, "settings": dict(SETTINGS), **changes}
    return LeadSourceFactory(campaign=campaign or CampaignFactory(), **fields)


def new_url(campaign) -> str:
    return f"/campaigns/{campaign.pk}/sources/apollo/new"


def edit_url(source) -> str:
    return f"/sources/{source.pk}/apollo"


# --- creating and editing in the console -----------------------------------------------------------


def test_a_new_apollo_source_is_saved_in_apollos_names_and_listed_on_the_campaign_page(operator):
    campaign = CampaignFactory()

    response = operator.post(new_url(campaign), {**FORM, "action": "save"})

    assert response.status_code == 302 and response["Location"] == f"/campaigns/{campaign.pk}#lead-sources"
    source = campaign.lead_sources.get()
    assert (source.kind, source.name, source.active, source.state) == ("apollo", "Founders in Europe", True, {})
    assert source.settings == SAVED
    page = operator.get(f"/campaigns/{campaign.pk}").content.decode()
    assert "Saved the Apollo source Founders in Europe." in page
    assert f'href="/sources/{source.pk}/apollo">Edit</a>' in page and "not started" in page


def test_the_edit_page_shows_the_saved_filters_and_saving_changes_them_and_restarts_the_search(operator):
    source = apollo_source(settings=dict(SAVED), state={"filters": filters_key(SAVED), "page": 3, "index": 7})

    page = operator.get(edit_url(source))

    form = page.context["form"]
    assert form["person_titles"].value() == "CEO, Head of Growth"
    assert form["person_locations"].value() == "Paris, France\nBerlin\n"  # one a line: a place holds a comma
    assert form["person_seniorities"].value() == ["c_suite", "founder"] and form["per_cycle"].value() == 40
    assert re.search(r'value="10001," id="\w+" checked>\s*10,001\+', page.content.decode())
    # Posted back as shown, the settings are the same; then the titles change.
    data = {name: value for name in form.fields if name != "active" and (value := form[name].value()) is not None}
    response = operator.post(edit_url(source), {**data, "person_titles": "CTO", "action": "save"}, follow=True)

    source.refresh_from_db()
    assert source.settings == {**SAVED, "person_titles": ["CTO"]} and source.active is False
    assert source.state == {"filters": filters_key(SAVED), "page": 3, "index": 7}  # the cycle's to reset
    assert "the next cycle starts its search again at page 1" in response.content.decode()
    assert "starts again at page 1 (filters changed)" in response.content.decode()


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"per_cycle": "0"}, "per_cycle", "greater than or equal to 1"),
    ({"person_seniorities": ["ceo"]}, "person_seniorities", "Select a valid choice"),
    ({"person_titles": ", ".join(f"title {i}" for i in range(101))}, "person_titles", "At most 100 items"),
    ({"q_keywords": "x" * 201}, "q_keywords", "at most 200 characters"),
    ({"name": ""}, "name", "This field is required"),
    ({"person_titles": " , ", "person_seniorities": [], "person_locations": "", "organization_num_employees_ranges": [],
      "q_keywords": "", "q_organization_domains_list": ""}, None, "Give at least one filter"),
], ids=["per-cycle", "seniority", "too-many-titles", "long-keywords", "no-name", "no-filter"])
def test_bad_input_is_a_field_error_and_nothing_is_saved(operator, changes, field, message):
    source = apollo_source()

    response = operator.post(edit_url(source), {**FORM, **changes, "action": "save"})

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == [field or "__all__"] and message in " ".join(errors[field or "__all__"])
    assert message in response.content.decode()
    source.refresh_from_db()
    assert source.settings == SETTINGS and source.name == "Apollo"


def test_an_edit_page_is_for_apollo_sources_only(operator):
    csv = LeadSourceFactory()
    assert operator.get(edit_url(csv)).status_code == 404


# --- the preview ---------------------------------------------------------------------------------------


def test_the_preview_shows_the_first_people_and_reveals_saves_and_counts_nothing(operator, fake_providers):
    campaign = CampaignFactory()

    response = operator.post(new_url(campaign), {**FORM, "action": "preview"})

    assert response.status_code == 200
    result = response.context["preview"]["result"]
    assert result.total == 240 and len(result.people) == 10
    assert result.people[0] == {"name": "Maya Chen", "title": "CEO", "company": "Company0000", "location": ""}
    page = response.content.decode()
    assert 'data-preview="total">240<' in page and "Maya Chen" in page and "Company0000" in page
    assert "@" not in page.split('id="preview-people"')[1].split("</table>")[0]  # no address
    assert response.context["form"]["person_titles"].value() == FORM["person_titles"]  # the form as typed
    assert fake_providers.calls == {f"POST {SEARCH}": 1}
    assert fake_providers.revealed_ids == []
    assert not LeadSource.objects.exists() and not Lead.objects.exists() and not ApiUsage.objects.exists()


def test_the_preview_searches_the_filters_as_typed_and_leaves_the_saved_ones(operator, provider_replay):
    source = apollo_source()
    provider_replay.answer("POST", SEARCH, body={
        "people": [{"id": "p1", "first_name": "Ann", "last_name_obfuscated": "Le***e", "title": "Founder",
                    "organization": {"name": "Acme"}, "city": "Lyon", "country": "France"}],
        "pagination": {"page": 1, "per_page": 10, "total_pages": 1}})

    response = operator.post(edit_url(source), {**FORM, "action": "preview"})

    assert [r["body"] for r in provider_replay.requests] == [{**{k: v for k, v in SAVED.items() if k != "per_cycle"},
                                                              "page": 1, "per_page": 10}]
    assert provider_replay.requests[0]["headers"]["x-api-key"] == "apollo-secret-key"
    page = response.content.decode()
    assert "Ann Le***e" in page and "Founder" in page and "Lyon, France" in page
    assert "does not say how many people" in page  # no total_entries in this answer
    source.refresh_from_db()
    assert (source.settings, source.name, source.state) == (SETTINGS, "Apollo", {})
    assert not ApiUsage.objects.exists()


def test_a_refused_key_is_a_form_error_that_never_shows_the_key(operator, provider_replay):
    source = apollo_source()
    provider_replay.answer("POST", SEARCH, status=401, body={"error": "Invalid access credentials."})

    response = operator.post(edit_url(source), {**FORM, "action": "preview"})

    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "The preview failed: Apollo: the API key was refused (401): check it"]
    page = response.content.decode()
    assert "The preview failed: Apollo: the API key was refused (401)" in page
    assert "apollo-secret-key" not in page
    source.refresh_from_db()
    assert source.settings == SETTINGS


def test_without_an_api_key_the_preview_says_so_and_calls_nobody(operator, settings):
    settings.APOLLO_API_KEY = ""
    settings.APOLLO_BASE_URL = "http://127.0.0.1:9"  # nothing listens: a call would be an error shown

    response = operator.post(new_url(CampaignFactory()), {**FORM, "action": "preview"})

    assert response.context["preview"] == {"no_key": True} and not response.context["form"].errors
    assert "APOLLO_API_KEY is not set" in response.content.decode()


def test_bad_filters_are_not_previewed(operator, fake_providers):
    response = operator.post(new_url(CampaignFactory()), {**FORM, "person_seniorities": ["ceo"], "action": "preview"})

    assert "person_seniorities" in response.context["form"].errors and response.context["preview"] is None
    assert fake_providers.calls == {}


# --- permissions ------------------------------------------------------------------------------------


def test_a_viewer_sees_the_filters_but_cannot_save_or_preview(client, fake_providers):
    client.force_login(read_only_staff())
    source = apollo_source()

    page = client.get(edit_url(source))

    assert page.status_code == 200 and page.context["form"]["person_titles"].value() == "CEO, CTO"
    assert all(field.disabled for field in page.context["form"].fields.values())
    assert 'value="preview"' not in page.content.decode() and 'value="save"' not in page.content.decode()
    assert client.post(edit_url(source), {**FORM, "action": "save"}).status_code == 403
    assert client.post(edit_url(source), {**FORM, "action": "preview"}).status_code == 403
    assert client.post(new_url(source.campaign), {**FORM, "action": "save"}).status_code == 403
    source.refresh_from_db()
    assert source.settings == SETTINGS and LeadSource.objects.count() == 1
    assert fake_providers.calls == {}


def test_the_permission_to_add_sources_does_not_change_one(client):
    client.force_login(user_with_perms("campaigns.view_campaign", "leads.view_leadsource", "leads.add_leadsource"))
    source = apollo_source()

    assert client.post(edit_url(source), {**FORM, "action": "save"}).status_code == 403
    source.refresh_from_db()
    assert source.settings == SETTINGS
    assert client.post(new_url(source.campaign), {**FORM, "action": "save"}).status_code == 302
    assert LeadSource.objects.count() == 2


def test_without_the_view_permission_the_pages_are_refused(client):
    client.force_login(user_with_perms("campaigns.view_campaign"))
    source = apollo_source()

    assert client.get(edit_url(source)).status_code == 403
    assert client.get(new_url(source.campaign)).status_code == 403
    page = client.get(f"/campaigns/{source.campaign.pk}").content.decode()
    assert "Add Apollo source" not in page and edit_url(source) not in page


# --- the campaign page's card -------------------------------------------------------------------------


def test_the_campaign_page_lists_its_sources_with_where_each_search_stands(operator):
    campaign = CampaignFactory()
    key = filters_key(apollo_settings_clean(SETTINGS))
    at_page = apollo_source(campaign, name="Going", state={"filters": key, "page": 3, "index": 40})
    apollo_source(campaign, name="Done", state={"filters": key, "page": 9, "index": 0, "exhausted": True},
                  active=False, last_error="Apollo: server error 502; the source stops for this cycle")
    LeadSourceFactory(campaign=campaign, name="Fair list")

    page = operator.get(f"/campaigns/{campaign.pk}").content.decode()

    card = page.split('id="lead-sources"')[1].split("</section>")[0]
    assert f'href="/campaigns/{campaign.pk}/sources/apollo/new"' in card
    rows = card.split("<tr data-source=")[1:]
    assert [row.split("<td>")[1].split("</td>")[0] for row in rows] == ["Going", "Done", "Fair list"]
    assert "Apollo.io people search" in rows[0] and "page 3" in rows[0] and edit_url(at_page) in rows[0]
    assert "exhausted" in rows[1] and "server error 502" in rows[1] and 'badge paused">no<' in rows[1]
    assert "CSV file" in rows[2] and "/apollo" not in rows[2]


# --- the admin --------------------------------------------------------------------------------------


def admin_data(campaign, **changes) -> dict:
    return {"campaign": campaign.pk, "name": "Apollo founders", "kind": "apollo", "active": "on",
            **{k: v for k, v in FORM.items() if k not in ("name", "active")}, **changes}


def test_the_admin_saves_an_apollo_source_from_its_fields_as_clean_settings(operator):
    campaign = CampaignFactory()

    response = operator.post("/admin/leads/leadsource/add/", admin_data(campaign, settings='{"path": "x.csv"}'))

    assert response.status_code == 302, response.content.decode()[:3000]
    source = LeadSource.objects.get()
    assert (source.kind, source.name, source.campaign, source.settings) == ("apollo", "Apollo founders", campaign, SAVED)


@pytest.mark.parametrize(("changes", "field"), [
    ({"person_seniorities": ["ceo"]}, "person_seniorities"),
    ({"per_cycle": "5000"}, "per_cycle"),
    ({"person_titles": "", "person_seniorities": [], "person_locations": "", "organization_num_employees_ranges": [],
      "q_keywords": "", "q_organization_domains_list": ""}, "__all__"),
], ids=["seniority", "per-cycle", "no-filter"])
def test_the_admin_refuses_bad_apollo_fields_with_a_field_error(operator, changes, field):
    response = operator.post("/admin/leads/leadsource/add/", admin_data(CampaignFactory(), **changes))

    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == [field]
    assert not LeadSource.objects.exists()


def test_the_admin_edits_an_apollo_sources_search_in_fields_not_json_and_keeps_its_place(operator):
    state = {"filters": filters_key(SETTINGS), "page": 2, "index": 0}
    source = apollo_source(state=state)
    url = f"/admin/leads/leadsource/{source.pk}/change/"

    page = operator.get(url)

    form = page.context["adminform"].form
    assert "settings" not in form.fields and form["person_titles"].value() == "CEO, CTO"
    assert "page 2" in page.content.decode()  # where the search stands
    response = operator.post(url, {**admin_data(source.campaign, name="Apollo"), "kind": "csv"})
    assert response.status_code == 302, response.content.decode()[:3000]
    source.refresh_from_db()
    assert (source.kind, source.settings, source.state) == ("apollo", SAVED, state)  # kind fixed once it exists


def test_the_campaigns_inline_checks_an_apollo_sources_json_as_the_cycle_does(operator):
    campaign = CampaignFactory()
    row = {"name": "Apollo", "kind": "apollo", "active": "on", "settings": '{"person_seniorities": ["ceo"]}'}

    response = operator.post(f"/admin/campaigns/campaign/{campaign.pk}/change/",
                             campaign_change_data(operator, campaign, row))

    assert response.status_code == 200
    assert "person_seniorities: Unknown: ceo." in response.content.decode()
    assert not campaign.lead_sources.exists()
    good = {**row, "settings": '{"person_titles": ["CEO", "CTO"], "person_seniorities": ["c_suite"]}'}
    response = operator.post(f"/admin/campaigns/campaign/{campaign.pk}/change/",
                             campaign_change_data(operator, campaign, good))
    assert response.status_code == 302
    assert campaign.lead_sources.get().settings == SETTINGS
