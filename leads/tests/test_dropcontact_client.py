"""The Dropcontact client against a local HTTP server answering in the documented shapes."""


import pytest

from leads.clients import dropcontact
from leads.clients.http import AuthFailed, BadAnswer, OutOfCredits, RateLimited, Unavailable
from leads.tests.factories import LeadFactory

KEY = "dropcontact-secret"  # set by the provider_replay fixture


@pytest.mark.django_db
def test_a_batch_is_submitted_with_what_is_known_then_polled_until_ready(provider_replay, http_session):
    lead = LeadFactory(email="ann@firm.example", first_name="Ann", last_name="Lee", company="Firm", job_title="",
                       linkedin_url="https://linkedin.com/in/ann")
    provider_replay.answer("POST", "/v1/enrich/all", body={"request_id": "r-42", "success": True, "credits_left": 99})
    provider_replay.answer("GET", "/v1/enrich/all/r-42", body={"success": False,
                                                     "reason": "Request not ready yet, try again in 30 seconds"})
    provider_replay.answer("GET", "/v1/enrich/all/r-42", body={"success": True, "data": [{
        "email": [{"email": "ann.lee@firm.example", "qualification": "nominative@pro"}],
        "job": "CTO", "nb_employees": "11-50", "naf5_des": "Software publishing", "website": "https://firm.example",
        "linkedin": "https://linkedin.com/in/ann", "company": "Firm"}]})

    request_id = dropcontact.enrich_submit(contacts=[dropcontact.contact_body(lead)], session=http_session)
    first = dropcontact.enrich_results(request_id=request_id, session=http_session)
    second = dropcontact.enrich_results(request_id=request_id, session=http_session)

    submitted = provider_replay.requests[0]
    assert submitted["headers"]["X-Access-Token"] == KEY
    assert submitted["body"]["data"] == [{"email": "ann@firm.example", "first_name": "Ann", "last_name": "Lee",
                                          "company": "Firm", "linkedin": "https://linkedin.com/in/ann"}]
    assert (first.ready, "not ready" in first.reason) == (False, True)
    assert second.ready and dropcontact.result_fields(second.data[0]) == {
        "email": "ann.lee@firm.example", "qualification": "nominative@pro", "job_title": "CTO",
        "company_size": "11-50", "industry": "Software publishing", "website": "https://firm.example",
        "linkedin_url": "https://linkedin.com/in/ann", "company": "Firm"}


def test_a_good_qualification_wins_over_an_invalid_address_listed_first():
    fields = dropcontact.result_fields({"email": [{"email": "x@firm.example", "qualification": "invalid"},
                                                  {"email": "Ann@Firm.example", "qualification": "catch_all@pro"}]})
    assert (fields["email"], fields["qualification"]) == ("ann@firm.example", "catch_all@pro")
    assert dropcontact.result_fields({"email": "not a list"})["email"] == ""


def test_more_than_250_contacts_are_refused_before_any_call(provider_replay, http_session):
    with pytest.raises(ValueError):
        dropcontact.enrich_submit(contacts=[{"email": f"a{i}@x.example"} for i in range(251)], session=http_session)
    assert provider_replay.requests == []


@pytest.mark.parametrize("status, headers, error", [
    (401, {}, AuthFailed), (402, {}, OutOfCredits), (429, {"Retry-After": "12"}, RateLimited),
    (503, {}, Unavailable),
])
def test_failures_of_a_submit_are_sorted(provider_replay, http_session, status, headers, error):
    provider_replay.answer("POST", "/v1/enrich/all", status=status, body={"error": "no"}, headers=headers)
    with pytest.raises(error) as raised:
        dropcontact.enrich_submit(contacts=[{"email": "a@x.example"}], session=http_session)
    assert KEY not in str(raised.value)


@pytest.mark.parametrize("body", [{"success": False, "error": "bad data"}, {"success": True}, b"not json"])
def test_a_submit_that_is_not_accepted_is_a_bad_answer(provider_replay, http_session, body):
    provider_replay.answer("POST", "/v1/enrich/all", body=body)
    with pytest.raises(BadAnswer):
        dropcontact.enrich_submit(contacts=[{"email": "a@x.example"}], session=http_session)


def test_results_without_a_list_are_a_bad_answer(provider_replay, http_session):
    provider_replay.answer("GET", "/v1/enrich/all/r-1", body={"success": True, "data": "soon"})
    with pytest.raises(BadAnswer):
        dropcontact.enrich_results(request_id="r-1", session=http_session)
