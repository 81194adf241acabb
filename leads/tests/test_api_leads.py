"""The lead endpoints of the HTTP API: a campaign's leads (list, add one, a list or a CSV upload)
and one lead (read, edit its details and tags, record a reply).

GET/POST /api/cam/campaigns/{id}/leads, GET/PATCH /api/cam/leads/{id}.
"""

import json
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone

from cam_project.testing import (
    assert_json_error,
    anonymous_client,
    raw_json,
    session_client,
    token_client,
    user_with_perms,
)
from campaigns.tests.factories import CampaignFactory, MessageStepFactory
from leads.api import MAX_LEADS_PER_REQUEST
from leads.models import Lead
from leads.tests.factories import LeadFactory
from outreach.models import OutreachAttempt
from outreach.tests.factories import SuppressionFactory

pytestmark = pytest.mark.django_db

LEAD_KEYS = {"id", "campaign", "email", "first_name", "last_name", "company", "job_title", "company_size", "industry",
             "status", "score", "tags", "email_valid", "next_action_at", "stopped_reason", "attempt_count",
             "first_contacted_at", "last_contacted_at", "replied_at", "created_at", "updated_at", "source_data"}
PAGE_KEYS = {"count", "next", "previous", "results"}
REPORT_KEYS = {"imported", "duplicates", "rejected", "cut", "duplicate_rows", "rejected_rows", "cut_rows"}
EMPTY_REPORT = {"imported": 0, "duplicates": 0, "rejected": 0, "cut": 0, "duplicate_rows": [], "rejected_rows": [],
                "cut_rows": []}


def leads_url(campaign_pk):
    return f"/api/cam/campaigns/{campaign_pk}/leads"


def lead_url(pk):
    return f"/api/cam/leads/{pk}"






@pytest.fixture
def campaign():
    return CampaignFactory(target_clients=50)


@pytest.fixture
def lead(campaign):
    return LeadFactory(campaign=campaign, email="jane@acme.example")



def csv_upload(text: str | bytes, name="leads.csv"):
    data = text.encode() if isinstance(text, str) else text
    return {"file": SimpleUploadedFile(name, data, content_type="text/csv")}


def run_live_cycle(api, campaign):
    response = api.post(f"/api/cam/campaigns/{campaign.pk}/run-cycle?dry_run=false")
    assert response.status_code == 200, response.content
    return response.json()


# --- authentication and permissions -----------------------------------------------------------------


def test_anonymous_requests_get_401_json_on_every_lead_endpoint(campaign, lead):
    client = anonymous_client()
    requests = [
        client.get(leads_url(campaign.pk)),
        client.post(leads_url(campaign.pk), {"email": "new@x.example"}, format="json"),
        client.post(leads_url(campaign.pk), [{"email": "new@x.example"}], format="json"),
        client.post(leads_url(campaign.pk), csv_upload("email\nnew@x.example\n"), format="multipart"),
        client.get(lead_url(lead.pk)),
        client.patch(lead_url(lead.pk), {"tags": ["do_not_contact"]}, format="json"),
    ]
    for response in requests:
        assert "detail" in assert_json_error(response, 401)
        assert response["WWW-Authenticate"].startswith("Token")
    lead.refresh_from_db()
    assert Lead.objects.count() == 1 and lead.tags == []


def test_token_and_session_authentication_both_work(admin, campaign, lead):
    for client in (token_client(admin), session_client(admin)):
        assert client.get(leads_url(campaign.pk)).json()["count"] == 1
        assert client.get(lead_url(lead.pk)).json()["email"] == "jane@acme.example"
        assert client.patch(lead_url(lead.pk), {"company": "Acme Ltd"}, format="json").status_code == 200


def test_a_read_only_staff_user_can_read_leads(viewer_api, campaign, lead):
    assert viewer_api.get(leads_url(campaign.pk)).json()["results"][0]["id"] == lead.pk
    assert viewer_api.get(lead_url(lead.pk)).json()["id"] == lead.pk


def test_a_read_only_staff_user_gets_403_when_adding_or_editing_leads(viewer_api, campaign, lead):
    writes = [
        viewer_api.post(leads_url(campaign.pk), {"email": "new@x.example"}, format="json"),
        viewer_api.post(leads_url(campaign.pk), [{"email": "new@x.example"}], format="json"),
        viewer_api.post(leads_url(campaign.pk), csv_upload("email\nnew@x.example\n"), format="multipart"),
        viewer_api.patch(lead_url(lead.pk), {"tags": ["do_not_contact"], "status": "REPLIED"}, format="json"),
    ]
    for response in writes:
        assert "detail" in assert_json_error(response, 403)
    lead.refresh_from_db()
    assert Lead.objects.count() == 1
    assert (lead.tags, lead.status, lead.replied_at) == ([], "ENRICHED", None)


def test_a_user_without_permissions_gets_403_on_reads(nobody_api, campaign, lead):
    assert_json_error(nobody_api.get(leads_url(campaign.pk)), 403)
    assert_json_error(nobody_api.get(lead_url(lead.pk)), 403)


def test_adding_needs_add_lead_and_editing_needs_change_lead(campaign, lead):
    adder = token_client(user_with_perms("leads.add_lead"))
    changer = token_client(user_with_perms("leads.change_lead"))
    campaign_editor = token_client(user_with_perms("campaigns.change_campaign", "campaigns.view_campaign"))

    assert adder.post(leads_url(campaign.pk), {"email": "new@x.example"}, format="json").status_code == 201
    assert_json_error(adder.patch(lead_url(lead.pk), {"company": "X"}, format="json"), 403)
    assert changer.patch(lead_url(lead.pk), {"company": "Changed"}, format="json").status_code == 200
    assert_json_error(changer.post(leads_url(campaign.pk), {"email": "other@x.example"}, format="json"), 403)
    assert_json_error(campaign_editor.post(leads_url(campaign.pk), {"email": "third@x.example"}, format="json"), 403)
    assert sorted(Lead.objects.values_list("email", flat=True)) == ["jane@acme.example", "new@x.example"]


# --- the list of a campaign's leads -------------------------------------------------------------------


def test_the_list_is_a_page_of_the_campaigns_leads_best_score_first(api, campaign):
    low = LeadFactory(campaign=campaign, score=0.2)
    high = LeadFactory(campaign=campaign, score=0.9, email="top@lead.example", tags=["hot"])
    middle = LeadFactory(campaign=campaign, score=0.5)
    LeadFactory(campaign=CampaignFactory(), score=1.0)

    response = api.get(leads_url(campaign.pk))

    assert response.status_code == 200
    page = response.json()
    assert set(page) == PAGE_KEYS
    assert (page["count"], page["next"], page["previous"]) == (3, None, None)
    assert [item["id"] for item in page["results"]] == [high.pk, middle.pk, low.pk]
    first = page["results"][0]
    assert LEAD_KEYS <= set(first)
    assert (first["campaign"], first["email"], first["status"], first["score"], first["tags"]) == (
        campaign.pk, "top@lead.example", "ENRICHED", 0.9, ["hot"])


def test_an_empty_campaign_has_an_empty_page(api, campaign):
    assert api.get(leads_url(campaign.pk)).json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_the_list_filters_by_status(api, campaign):
    LeadFactory.create_batch(2, campaign=campaign, status="NEW")
    replied = LeadFactory(campaign=campaign, status="REPLIED")

    page = api.get(leads_url(campaign.pk) + "?status=REPLIED").json()

    assert page["count"] == 1 and [item["id"] for item in page["results"]] == [replied.pk]
    assert api.get(leads_url(campaign.pk) + "?status=NEW").json()["count"] == 2
    assert api.get(leads_url(campaign.pk) + "?status=LOST").json()["count"] == 0


@pytest.mark.parametrize("status", ["WON", "new", "replied", "NEW%00", "x" * 300])
def test_an_unknown_status_filter_is_a_400(api, campaign, status):
    errors = assert_json_error(api.get(leads_url(campaign.pk) + f"?status={status}"), 400)
    assert "status" in errors


def test_search_finds_leads_by_part_of_the_email_name_company_or_title_ignoring_case(api, campaign):
    by_email = LeadFactory(campaign=campaign, email="zed@findme.example", first_name="A", company="C1",
                           job_title="T1")
    by_first = LeadFactory(campaign=campaign, first_name="Findmeister", company="C2", job_title="T2")
    by_last = LeadFactory(campaign=campaign, last_name="McFINDME", company="C3", job_title="T3")
    by_company = LeadFactory(campaign=campaign, company="FindMe Corp", job_title="T4")
    by_title = LeadFactory(campaign=campaign, job_title="Head of findme", company="C5")
    LeadFactory(campaign=campaign, company="Other", job_title="CEO")
    LeadFactory(campaign=CampaignFactory(), company="FindMe elsewhere")

    page = api.get(leads_url(campaign.pk) + "?search=FINDme").json()

    assert page["count"] == 5
    assert {item["id"] for item in page["results"]} == {by_email.pk, by_first.pk, by_last.pk, by_company.pk,
                                                         by_title.pk}
    assert api.get(leads_url(campaign.pk) + "?search=nobody-has-this").json()["count"] == 0


def test_search_and_status_combine(api, campaign):
    wanted = LeadFactory(campaign=campaign, company="Blue Ltd", status="LOST")
    LeadFactory(campaign=campaign, company="Blue Inc", status="NEW")
    page = api.get(leads_url(campaign.pk) + "?search=blue&status=LOST").json()
    assert [item["id"] for item in page["results"]] == [wanted.pk]


@pytest.mark.parametrize("search", ["a%00b", "x" * 201])
def test_a_search_with_a_nul_byte_or_too_long_is_a_400(api, campaign, lead, search):
    assert "search" in assert_json_error(api.get(leads_url(campaign.pk) + f"?search={search}"), 400)


def test_the_list_is_paginated_with_page_and_page_size(api, campaign):
    leads = [LeadFactory(campaign=campaign, score=score / 10) for score in (9, 8, 7, 6, 5)]

    first = api.get(leads_url(campaign.pk) + "?page_size=2").json()
    second = api.get(first["next"]).json()
    last = api.get(leads_url(campaign.pk) + "?page_size=2&page=3").json()

    assert first["count"] == 5 and first["previous"] is None
    assert first["next"].endswith(f"/api/cam/campaigns/{campaign.pk}/leads?page=2&page_size=2")
    assert [item["id"] for item in first["results"]] == [leads[0].pk, leads[1].pk]
    assert [item["id"] for item in second["results"]] == [leads[2].pk, leads[3].pk]
    assert [item["id"] for item in last["results"]] == [leads[4].pk] and last["next"] is None


def test_pages_hold_50_leads_by_default_and_at_most_500(api, campaign):
    now = timezone.now()
    Lead.objects.bulk_create(
        Lead(campaign=campaign, email=f"bulk{i}@many.example", created_at=now) for i in range(520)
    )
    default = api.get(leads_url(campaign.pk)).json()
    huge = api.get(leads_url(campaign.pk) + "?page_size=100000").json()
    assert (default["count"], len(default["results"])) == (520, 50)
    assert len(huge["results"]) == 500


@pytest.mark.parametrize("page", ["0", "-1", "99", "abc", "1" * 30])
def test_a_page_that_does_not_exist_is_a_404_json(api, campaign, lead, page):
    assert "detail" in assert_json_error(api.get(leads_url(campaign.pk) + f"?page={page}"), 404)


@pytest.mark.parametrize("pk", ["424242", "999999999999999999", "1" * 30, "abc", "-1"])
def test_the_leads_of_an_unknown_campaign_are_404_json(api, pk):
    assert "detail" in assert_json_error(api.get(leads_url(pk)), 404)
    assert "detail" in assert_json_error(api.post(leads_url(pk), {"email": "a@b.example"}, format="json"), 404)
    assert not Lead.objects.exists()


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_wrong_methods_on_a_campaigns_leads_are_405(api, campaign, lead, method):
    response = getattr(api, method)(leads_url(campaign.pk), {"email": "a@b.example"}, format="json")
    assert "detail" in assert_json_error(response, 405)
    assert Lead.objects.count() == 1


# --- adding one lead ---------------------------------------------------------------------------------


def test_adding_one_lead_answers_201_with_the_import_report(api, campaign):
    response = api.post(leads_url(campaign.pk), {
        "email": "  Jane.Doe@ACME.example ", "first_name": "Jane", "last_name": "Doe", "company": "Acme",
        "job_title": "CTO", "company_size": "11-50", "industry": "SaaS", "extra": {"website": "acme.example"},
    }, format="json")

    assert response.status_code == 201
    assert response.json() == {**EMPTY_REPORT, "imported": 1}
    lead = Lead.objects.get()
    assert (lead.campaign_id, lead.email, lead.status) == (campaign.pk, "jane.doe@acme.example", "NEW")
    assert (lead.first_name, lead.last_name, lead.company, lead.job_title, lead.company_size, lead.industry) == (
        "Jane", "Doe", "Acme", "CTO", "11-50", "SaaS")
    assert lead.source_data == {"website": "acme.example"}
    assert lead.next_action_at is not None


def test_a_lead_given_with_a_display_name_is_stored_by_its_address(api, campaign):
    assert api.post(leads_url(campaign.pk), {"email": "Jane Doe <Jane@Acme.example>"}, format="json").status_code == 201
    assert Lead.objects.get().email == "jane@acme.example"


def test_adding_an_address_already_in_the_campaign_is_409_with_the_report(api, campaign, lead):
    response = api.post(leads_url(campaign.pk), {"email": "JANE@acme.example", "company": "Other"}, format="json")

    assert response.status_code == 409
    assert response.json() == {**EMPTY_REPORT, "duplicates": 1, "duplicate_rows": [
        {"line": 1, "email": "jane@acme.example", "reason": "already in this campaign"}]}
    lead.refresh_from_db()
    assert Lead.objects.count() == 1 and lead.company == "Acme"


def test_the_same_address_may_be_a_lead_of_two_campaigns(api, campaign, lead):
    other = CampaignFactory()
    assert api.post(leads_url(other.pk), {"email": "jane@acme.example"}, format="json").status_code == 201
    assert Lead.objects.filter(email="jane@acme.example").count() == 2


def test_a_suppressed_address_is_refused_with_an_email_error(api, campaign):
    SuppressionFactory(email="gone@example.org", reason="unsubscribed")
    errors = assert_json_error(api.post(leads_url(campaign.pk), {"email": "Gone@Example.org"}, format="json"), 400)
    assert errors == {"email": ["suppressed (unsubscribed)"]}
    assert not Lead.objects.exists()


INVALID_LEADS = [
    ({}, "email"),
    ({"email": ""}, "email"),
    ({"email": None}, "email"),
    ({"email": "not-an-address"}, "email"),
    ({"email": "two@at@signs.example"}, "email"),
    ({"email": "no-domain@"}, "email"),
    ({"email": ["a@b.example"]}, "email"),
    ({"email": {"address": "a@b.example"}}, "email"),
    ({"email": "a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".example"}, "email"),
    ({"email": "x" * 400 + "@b.example"}, "email"),
    ({"email": "nul\x00@b.example"}, "email"),
    ({"email": "a@b.example", "first_name": "x" * 101}, "first_name"),
    ({"email": "a@b.example", "last_name": "x" * 101}, "last_name"),
    ({"email": "a@b.example", "company": "x" * 201}, "company"),
    ({"email": "a@b.example", "job_title": "x" * 201}, "job_title"),
    ({"email": "a@b.example", "company_size": "x" * 51}, "company_size"),
    ({"email": "a@b.example", "industry": "x" * 101}, "industry"),
    ({"email": "a@b.example", "first_name": ["Jane"]}, "first_name"),
    ({"email": "a@b.example", "company": {"name": "Acme"}}, "company"),
    ({"email": "a@b.example", "first_name": "Ja\x00ne"}, "first_name"),
    ({"email": "a@b.example", "extra": "website=acme"}, "extra"),
    ({"email": "a@b.example", "extra": ["acme"]}, "extra"),
    ({"email": "a@b.example", "extra": {"website": "x" * 1001}}, "extra"),
    ({"email": "a@b.example", "extra": {"website": {"nested": 1}}}, "extra"),
    ({"email": "a@b.example", "extra": {"website": "nul\x00"}}, "extra"),
]


@pytest.mark.parametrize(("body", "field"), INVALID_LEADS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(INVALID_LEADS)])
def test_an_invalid_lead_is_a_400_naming_the_field_and_adds_nothing(api, campaign, body, field):
    errors = assert_json_error(api.post(leads_url(campaign.pk), body, format="json"), 400)
    assert field in errors and errors[field], errors
    assert not Lead.objects.exists()


def test_a_lead_whose_extra_field_name_has_a_nul_byte_is_not_a_server_error(api, campaign):
    response = api.post(leads_url(campaign.pk), {"email": "a@b.example", "extra": {"web\x00site": "x"}}, format="json")
    assert response.status_code in (201, 400), response.content


@pytest.mark.parametrize("body", [b'{"email": "a@b.example"', b"{'email': 'a@b.example'}", b"email=a@b.example",
                                  b'{"email": "a@b.example",}', b"\xff\xfe", b'"a@b.example"', b"42", b"null"])
def test_a_malformed_or_scalar_json_body_is_a_400(api, campaign, body):
    assert_json_error(raw_json(api, "post", leads_url(campaign.pk), body), 400)
    assert not Lead.objects.exists()


def test_a_form_encoded_body_is_an_unsupported_media_type(api, campaign):
    response = api.post(leads_url(campaign.pk), "email=a%40b.example", content_type="application/x-www-form-urlencoded")
    assert_json_error(response, 415)
    assert not Lead.objects.exists()


# --- adding a JSON list -------------------------------------------------------------------------------


def test_a_list_reports_each_bad_item_by_number_and_adds_the_good_ones(api, campaign, lead):
    SuppressionFactory(email="gone@example.org", reason="bounced")
    items = [
        {"email": "ann@acme.example", "first_name": "Ann", "website": "acme.example"},   # 1 good
        {"email": "not-an-address"},                                                     # 2 rejected
        "bob@bolt.example",                                                              # 3 not an object
        {"email": "ANN@acme.example"},                                                   # 4 repeats 1
        {"first_name": "No address"},                                                    # 5 rejected
        {"email": "long@co.example", "company": "x" * 201},                              # 6 rejected
        {"email": "jane@acme.example"},                                                  # 7 already there
        {"email": "gone@example.org"},                                                   # 8 suppressed
        None,                                                                            # 9 not an object
        {"email": "cat@cat.example", "extra": {"city": "Lyon"}, "title": "COO"},         # 10 good
    ]

    response = api.post(leads_url(campaign.pk), items, format="json")

    assert response.status_code == 201
    report = response.json()
    assert set(report) == REPORT_KEYS
    assert (report["imported"], report["duplicates"], report["rejected"]) == (2, 2, 6)
    assert [(row["line"], row["email"]) for row in report["duplicate_rows"]] == [
        (4, "ann@acme.example"), (7, "jane@acme.example")]
    assert report["duplicate_rows"][0]["reason"] == "repeats line 1"
    assert report["duplicate_rows"][1]["reason"] == "already in this campaign"
    rejected = {row["line"]: row for row in report["rejected_rows"]}
    assert sorted(rejected) == [2, 3, 5, 6, 8, 9]
    assert rejected[2]["reason"].startswith("invalid email")
    assert rejected[3]["reason"] == rejected[9]["reason"] == "not a JSON object"
    assert rejected[5]["reason"] == "missing email"
    assert rejected[6]["reason"] == "company is longer than 200 characters"
    assert rejected[8]["reason"] == "suppressed (bounced)"
    ann = Lead.objects.get(email="ann@acme.example")
    cat = Lead.objects.get(email="cat@cat.example")
    # A website is the lead's own field; what is under "extra" stays extra, even a known name.
    assert (ann.first_name, ann.website, ann.source_data) == ("Ann", "acme.example", {})
    assert (cat.job_title, cat.source_data) == ("COO", {"city": "Lyon"})
    assert Lead.objects.filter(campaign=campaign).count() == 3


def test_a_list_with_only_bad_items_answers_200_with_the_report(api, campaign):
    response = api.post(leads_url(campaign.pk), [{"email": "bad"}, 7], format="json")
    assert response.status_code == 200
    assert (response.json()["imported"], response.json()["rejected"]) == (0, 2)
    assert not Lead.objects.exists()


def test_an_empty_list_adds_nothing(api, campaign):
    response = api.post(leads_url(campaign.pk), [], format="json")
    assert response.status_code == 200 and response.json() == EMPTY_REPORT


def test_a_list_longer_than_the_limit_is_a_400_and_adds_nothing(api, campaign):
    items = [{"email": f"p{i}@many.example"} for i in range(MAX_LEADS_PER_REQUEST + 1)]
    errors = assert_json_error(api.post(leads_url(campaign.pk), items, format="json"), 400)
    assert "non_field_errors" in errors
    assert not Lead.objects.exists()


def test_a_list_item_with_a_nul_byte_never_stops_the_good_items(api, campaign):
    items = [{"email": "nul@x.example", "first_name": "A\x00B"}, {"email": "good@x.example"}]
    response = api.post(leads_url(campaign.pk), items, format="json")
    assert response.status_code == 201, response.content
    report = response.json()
    assert report["imported"] + report["rejected"] == 2
    assert Lead.objects.filter(email="good@x.example").exists()


def test_a_list_item_with_a_nul_byte_in_an_unmapped_field_never_stops_the_good_items(api, campaign):
    items = [{"email": "nul@x.example", "website": "a\x00b"}, {"email": "nul2@x.example", "we\x00b": "x"},
             {"email": "good@x.example"}]
    response = api.post(leads_url(campaign.pk), items, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["imported"] + response.json()["rejected"] == 3
    assert Lead.objects.filter(email="good@x.example").exists()


# --- uploading a CSV file -----------------------------------------------------------------------------

MIXED_CSV = "\n".join([
    "Email,First Name,Company,Job Title,Website",
    "ann@acme.example,Ann,Acme,CEO,acme.example",       # 2 good
    "ANN@acme.example,Ann again,Acme,CEO,",             # 3 repeats line 2
    "not-an-address,X,Y,Z,",                            # 4 invalid
    ",Nobody,Y,Z,",                                     # 5 missing email
    "bob@bolt.example,Bob," + "x" * 201 + ",CTO,",      # 6 company too long
    "jane@acme.example,Jane,Acme,CMO,",                 # 7 already in the campaign
    "gone@example.org,Gone,G,CEO,",                     # 8 suppressed
    'cat@cat.example,Cat,"Cat, Inc.",COO,cat.example',  # 9 good
    "too,many,fields,in,this,row",                      # 10 wrong field count
    "dan@dan.example,Dan,Dan Co,CMO,",                  # 11 good
]) + "\n"


def test_a_csv_upload_answers_with_the_same_report_as_import_leads(api, tmp_path):
    SuppressionFactory(email="gone@example.org", reason="unsubscribed")
    by_api, by_command = CampaignFactory(), CampaignFactory()
    for campaign in (by_api, by_command):
        LeadFactory(campaign=campaign, email="jane@acme.example")
    path = tmp_path / "leads.csv"
    path.write_text(MIXED_CSV)
    out = StringIO()
    call_command("import_leads", "--campaign-id", str(by_command.pk), str(path), "--json", stdout=out)

    response = api.post(leads_url(by_api.pk), csv_upload(MIXED_CSV), format="multipart")

    assert response.status_code == 201
    report = response.json()
    assert report == json.loads(out.getvalue())
    assert (report["imported"], report["duplicates"], report["rejected"]) == (3, 2, 5)
    assert [row["line"] for row in report["duplicate_rows"]] == [3, 7]
    assert sorted(row["line"] for row in report["rejected_rows"]) == [4, 5, 6, 8, 10]
    assert sorted(Lead.objects.filter(campaign=by_api).values_list("email", flat=True)) == [
        "ann@acme.example", "cat@cat.example", "dan@dan.example", "jane@acme.example"]
    assert Lead.objects.get(campaign=by_api, email="cat@cat.example").company == "Cat, Inc."
    assert Lead.objects.get(campaign=by_api, email="ann@acme.example").website == "acme.example"


def test_a_csv_upload_with_nothing_new_answers_200(api, campaign, lead):
    response = api.post(leads_url(campaign.pk), csv_upload("email\njane@acme.example\n"), format="multipart")
    assert response.status_code == 200
    assert (response.json()["imported"], response.json()["duplicates"]) == (0, 1)


def test_an_excel_csv_in_windows_1252_with_semicolons_keeps_its_accents(api, campaign):
    data = "email;first_name;company\nhans@mueller.example;Jürgen;Müller GmbH\n".encode("cp1252")
    response = api.post(leads_url(campaign.pk), csv_upload(data), format="multipart")
    assert response.status_code == 201
    lead = Lead.objects.get()
    assert (lead.first_name, lead.company) == ("Jürgen", "Müller GmbH")


def test_a_large_csv_upload_is_imported_in_full(api, campaign):
    text = "email,company\n" + "".join(f"p{i}@bulk.example,Firm {i}\n" for i in range(1200))
    response = api.post(leads_url(campaign.pk), csv_upload(text), format="multipart")
    assert response.status_code == 201
    assert response.json()["imported"] == 1200
    assert Lead.objects.filter(campaign=campaign).count() == 1200


@pytest.mark.parametrize("data", [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
    b"name,company\nJane,Acme\n",
    b"",
    b"\n\n",
    b'email,"unterminated\n',
], ids=["binary", "no-email-column", "empty", "blank-lines", "broken-header"])
def test_a_file_that_is_not_a_csv_of_leads_is_a_400_file_error(api, campaign, data):
    errors = assert_json_error(api.post(leads_url(campaign.pk), csv_upload(data), format="multipart"), 400)
    assert list(errors) == ["file"] and errors["file"] and isinstance(errors["file"][0], str)
    assert not Lead.objects.exists()


def test_the_file_error_says_which_columns_it_found(api, campaign):
    errors = api.post(leads_url(campaign.pk), csv_upload("name,company\nJane,Acme\n"), format="multipart").json()
    assert "no email column" in errors["file"][0] and "'name'" in errors["file"][0]


def test_a_csv_with_a_nul_byte_in_a_field_never_stops_the_good_rows(api, campaign):
    data = "email,first_name\r\nnul@x.example,A\x00B\r\ngood@x.example,C\r\n".encode("utf-16")
    response = api.post(leads_url(campaign.pk), csv_upload(data), format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["imported"] + response.json()["rejected"] == 2
    assert Lead.objects.filter(email="good@x.example").exists()


def test_an_upload_to_an_unknown_campaign_is_404(api):
    assert_json_error(api.post(leads_url(424242), csv_upload("email\na@b.example\n"), format="multipart"), 404)


def test_a_multipart_body_without_a_file_is_a_400(api, campaign):
    errors = assert_json_error(api.post(leads_url(campaign.pk), {"company": "Acme"}, format="multipart"), 400)
    assert "email" in errors
    assert not Lead.objects.exists()


# --- one lead -----------------------------------------------------------------------------------------


def test_a_lead_is_shown_with_all_its_fields(api, campaign):
    lead = LeadFactory(campaign=campaign, email="jane@acme.example", tags=["hot"], source_data={"city": "Lyon"},
                       score=0.8)
    response = api.get(lead_url(lead.pk))
    assert response.status_code == 200
    body = response.json()
    assert LEAD_KEYS <= set(body)
    assert (body["id"], body["campaign"], body["email"], body["status"], body["score"], body["tags"]) == (
        lead.pk, campaign.pk, "jane@acme.example", "ENRICHED", 0.8, ["hot"])
    assert (body["source_data"], body["attempt_count"], body["replied_at"]) == ({"city": "Lyon"}, 0, None)


@pytest.mark.parametrize("pk", ["424242", "999999999999999999", "1" * 19, "1" * 30, "abc", "-1", "1e3"])
def test_an_unknown_or_malformed_lead_id_is_404_json(api, lead, pk):
    assert "detail" in assert_json_error(api.get(lead_url(pk)), 404)
    assert "detail" in assert_json_error(api.patch(lead_url(pk), {"tags": []}, format="json"), 404)


@pytest.mark.parametrize("method", ["put", "post", "delete"])
def test_wrong_methods_on_a_lead_are_405(api, lead, method):
    response = getattr(api, method)(lead_url(lead.pk), {"company": "X"}, format="json")
    assert "detail" in assert_json_error(response, 405)
    lead.refresh_from_db()
    assert Lead.objects.count() == 1 and lead.company == "Acme"


def test_patch_edits_the_leads_details_and_answers_with_the_lead(api, lead):
    response = api.patch(lead_url(lead.pk), {"first_name": "Janet", "company": "  Acme   Group "}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert LEAD_KEYS <= set(body)
    assert (body["first_name"], body["company"]) == ("Janet", "Acme   Group")
    lead.refresh_from_db()
    assert (lead.first_name, lead.last_name, lead.company) == ("Janet", "Doe", "Acme   Group")


def test_patch_replaces_the_tags_cleaned_lower_case_and_without_repeats(api, lead):
    response = api.patch(lead_url(lead.pk), {"tags": ["  VIP ", "vip", "Hot", "warm"]}, format="json")
    assert response.status_code == 200 and response.json()["tags"] == ["vip", "hot", "warm"]
    assert api.patch(lead_url(lead.pk), {"tags": ["warm"]}, format="json").json()["tags"] == ["warm"]
    lead.refresh_from_db()
    assert lead.tags == ["warm"]


def test_tagging_do_not_contact_stops_outreach_at_once(api, campaign, smtp_server):
    MessageStepFactory(campaign=campaign, position=1)
    quiet = LeadFactory(campaign=campaign, email="quiet@x.example")
    LeadFactory(campaign=campaign, email="open@x.example")

    response = api.patch(lead_url(quiet.pk), {"tags": ["Do_Not_Contact"]}, format="json")

    body = response.json()
    assert response.status_code == 200
    assert (body["tags"], body["next_action_at"], body["stopped_reason"]) == (
        ["do_not_contact"], None, "tagged do_not_contact")
    result = run_live_cycle(api, campaign)
    assert smtp_server.recipients() == ["open@x.example"]
    assert result["outreach_sent"] == 1
    assert not OutreachAttempt.objects.filter(lead=quiet).exists()


def test_removing_do_not_contact_and_resuming_lets_outreach_go_on(api, campaign, smtp_server):
    MessageStepFactory(campaign=campaign, position=1)
    lead = LeadFactory(campaign=campaign, email="back@x.example")
    api.patch(lead_url(lead.pk), {"tags": ["do_not_contact", "vip"]}, format="json")

    body = api.patch(lead_url(lead.pk), {"tags": ["vip"]}, format="json").json()
    # Removing the tag alone sends nothing: staff resume the lead, which checks it may be emailed.
    assert (body["tags"], body["next_action_at"], body["stopped_reason"]) == (["vip"], None, "tagged do_not_contact")
    run_live_cycle(api, campaign)
    assert smtp_server.recipients() == []

    body = api.post(lead_url(lead.pk) + "/resume").json()
    assert (body["stopped_reason"], body["next_action_at"] is not None) == ("", True)
    run_live_cycle(api, campaign)
    assert smtp_server.recipients() == ["back@x.example"]


def test_removing_do_not_contact_never_mails_a_suppressed_address(api, campaign, smtp_server):
    MessageStepFactory(campaign=campaign, position=1)
    lead = LeadFactory(campaign=campaign, email="gone@x.example")
    api.post("/api/cam/suppressions", {"email": "gone@x.example"}, format="json")
    api.patch(lead_url(lead.pk), {"tags": ["do_not_contact"]}, format="json")
    api.patch(lead_url(lead.pk), {"tags": []}, format="json")

    run_live_cycle(api, campaign)

    assert smtp_server.messages == []


def test_removing_do_not_contact_does_not_restart_a_lead_stopped_for_another_reason(api, campaign):
    lead = LeadFactory(campaign=campaign, status="REPLIED", next_action_at=None, stopped_reason="replied",
                       tags=["do_not_contact"])
    body = api.patch(lead_url(lead.pk), {"tags": []}, format="json").json()
    assert (body["next_action_at"], body["status"]) == (None, "REPLIED")


def test_recording_a_reply_moves_the_lead_to_replied_and_stops_follow_ups(api, campaign, smtp_server):
    MessageStepFactory(campaign=campaign, position=1)
    lead = LeadFactory(campaign=campaign, status="CONTACTED", attempt_count=0)

    response = api.patch(lead_url(lead.pk), {"status": "REPLIED"}, format="json")

    body = response.json()
    assert response.status_code == 200
    assert (body["status"], body["next_action_at"], body["stopped_reason"]) == ("REPLIED", None, "replied")
    assert body["replied_at"] is not None
    metrics = api.get(f"/api/cam/campaigns/{campaign.pk}").json()["metrics"]
    assert (metrics["replied_leads"], metrics["contacted_leads"]) == (1, 0)
    run_live_cycle(api, campaign)
    assert smtp_server.messages == []


@pytest.mark.parametrize("start", ["NEW", "ENRICHED", "CONTACTED", "LOST"])
def test_a_reply_can_be_recorded_from_any_open_or_lost_status(api, campaign, start):
    lead = LeadFactory(campaign=campaign, status=start)
    assert api.patch(lead_url(lead.pk), {"status": "REPLIED"}, format="json").json()["status"] == "REPLIED"


def test_recording_a_reply_twice_keeps_the_first_reply_time(api, lead):
    first = api.patch(lead_url(lead.pk), {"status": "REPLIED"}, format="json").json()["replied_at"]
    again = api.patch(lead_url(lead.pk), {"status": "REPLIED"}, format="json")
    assert again.status_code == 200 and again.json()["replied_at"] == first


@pytest.mark.parametrize("status", ["QUALIFIED", "LOST"])
def test_staff_can_close_a_lead_as_qualified_or_lost(api, lead, status):
    body = api.patch(lead_url(lead.pk), {"status": status}, format="json").json()
    assert (body["status"], body["next_action_at"], body["stopped_reason"]) == (
        status, None, f"marked {status.lower()} by staff")


def test_a_transition_the_state_machine_forbids_is_a_400_on_status_and_changes_nothing(api, campaign):
    lead = LeadFactory(campaign=campaign, status="QUALIFIED", next_action_at=None, tags=["hot"])

    response = api.patch(lead_url(lead.pk), {"status": "REPLIED", "tags": ["do_not_contact"], "company": "New"},
                         format="json")

    errors = assert_json_error(response, 400)
    assert list(errors) == ["status"] and "QUALIFIED" in errors["status"][0]
    lead.refresh_from_db()
    assert (lead.status, lead.tags, lead.company, lead.replied_at) == ("QUALIFIED", ["hot"], "Acme", None)


@pytest.mark.parametrize("status", ["WON", "NEW", "ENRICHED", "CONTACTED", "replied", "", None, 3, ["REPLIED"],
                                    "REPLIED\x00"])
def test_an_unknown_or_automatic_status_is_a_400_on_status(api, lead, status):
    errors = assert_json_error(api.patch(lead_url(lead.pk), {"status": status}, format="json"), 400)
    assert "status" in errors
    lead.refresh_from_db()
    assert lead.status == "ENRICHED"


@pytest.mark.parametrize(("body", "field"), [
    ({"tags": "do_not_contact"}, "tags"),
    ({"tags": {"do_not_contact": True}}, "tags"),
    ({"tags": [None]}, "tags"),
    ({"tags": [["nested"]]}, "tags"),
    ({"tags": ["   "]}, "tags"),
    ({"tags": ["x" * 51]}, "tags"),
    ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
    ({"tags": ["nul\x00"]}, "tags"),
    ({"tags": None}, "tags"),
    ({"first_name": "x" * 101}, "first_name"),
    ({"company": "x" * 201}, "company"),
    ({"company_size": ["big"]}, "company_size"),
    ({"job_title": "nul\x00"}, "job_title"),
])
def test_invalid_changes_to_a_lead_are_a_400_naming_the_field_and_change_nothing(api, lead, body, field):
    errors = assert_json_error(api.patch(lead_url(lead.pk), body, format="json"), 400)
    assert field in errors, errors
    lead.refresh_from_db()
    assert (lead.tags, lead.first_name, lead.company, lead.job_title) == ([], "Jane", "Acme", "Head of Marketing")


@pytest.mark.parametrize("body", [b'{"status": ', b"[]", b'"REPLIED"', b"null", b'{"tags": [NaN]}'])
def test_a_malformed_or_non_object_patch_is_a_400(api, lead, body):
    assert_json_error(raw_json(api, "patch", lead_url(lead.pk), body), 400)
    lead.refresh_from_db()
    assert lead.status == "ENRICHED"


def test_an_empty_patch_changes_nothing(api, lead):
    response = api.patch(lead_url(lead.pk), {}, format="json")
    assert response.status_code == 200
    lead.refresh_from_db()
    assert (response.json()["status"], lead.status, lead.tags) == ("ENRICHED", "ENRICHED", [])
