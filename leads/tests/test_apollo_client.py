"""The Apollo client against a local HTTP server answering in the documented shapes
(../shared/INTEGRATIONS.md); nothing here reaches the internet."""

import time

import pytest

from conftest import free_port
from leads.clients import apollo
from leads.clients.http import AuthFailed, BadAnswer, OutOfCredits, RateLimited, Unavailable

KEY = "apollo-secret-key"  # set by the provider_replay fixture


SEARCH = "/api/v1/mixed_people/api_search"
REVEAL = "/api/v1/people/bulk_match"


def person(i):
    return {"id": f"p{i}", "first_name": f"Ann{i}", "name": f"Ann{i} Lee", "title": "CTO",
            "organization": {"name": f"Firm {i}"}}


def test_the_search_sends_the_filters_and_the_key_and_reads_people_and_pages(provider_replay, http_session):
    provider_replay.answer("POST", SEARCH, body={"people": [person(1), person(2)],
                                "pagination": {"page": 2, "per_page": 2, "total_entries": 7, "total_pages": 4}})
    filters = {"person_titles": ["CTO", "VP Engineering"], "person_seniorities": ["c_suite"],
               "organization_num_employees_ranges": ["11,50"], "q_keywords": "", "not_a_filter": "x"}

    page = apollo.people_search(filters=filters, page=2, per_page=2, session=http_session)

    sent = provider_replay.requests[0]
    assert sent["headers"]["x-api-key"] == KEY
    assert sent["body"] == {"person_titles": ["CTO", "VP Engineering"], "person_seniorities": ["c_suite"],
                            "organization_num_employees_ranges": ["11,50"], "page": 2, "per_page": 2}
    assert [p["id"] for p in page.people] == ["p1", "p2"] and (page.page, page.total_pages, page.last) == (2, 4, False)


@pytest.mark.parametrize("body", [
    {"people": [], "pagination": {"page": 5, "total_pages": 9}},
    {"people": [person(1)], "pagination": {"page": 3, "total_pages": 3}},
    {"people": [person(1)]},  # no pagination: nothing to go on to
])
def test_an_empty_or_last_page_says_the_search_is_exhausted(provider_replay, http_session, body):
    provider_replay.answer("POST", SEARCH, body=body)
    page_number = body.get("pagination", {}).get("page", 1)
    assert apollo.people_search(filters={}, page=page_number, per_page=10, session=http_session).last


def test_the_reveal_asks_for_up_to_ten_people_and_drops_those_not_matched(provider_replay, http_session):
    provider_replay.answer("POST", REVEAL, body={"matches": [
        {"id": "p1", "email": "ann1@firm1.example", "email_status": "verified", "first_name": "Ann1",
         "last_name": "Lee", "title": "CTO", "city": "Berlin", "country": "Germany",
         "linkedin_url": "http://www.linkedin.com/in/ann1", "time_zone": "Europe/Berlin",
         "organization": {"name": "Firm 1", "estimated_num_employees": 42, "industry": "computer software",
                          "website_url": "http://www.firm1.example"}},
        None,
    ]})

    matches = apollo.people_reveal(people=[person(1), person(2)], session=http_session)

    assert provider_replay.requests[0]["body"]["details"] == [{"id": "p1"}, {"id": "p2"}]
    assert apollo.match_fields(matches[0]) == {
        "email": "ann1@firm1.example", "first_name": "Ann1", "last_name": "Lee", "job_title": "CTO",
        "company": "Firm 1", "company_size": "42", "industry": "computer software",
        "website": "http://www.firm1.example", "city": "Berlin",
        "country": "Germany", "linkedin_url": "http://www.linkedin.com/in/ann1", "time_zone": "Europe/Berlin",
        "email_status": "verified",
    }
    assert len(matches) == 1
    with pytest.raises(ValueError):
        apollo.people_reveal(people=[person(i) for i in range(11)], session=http_session)


@pytest.mark.parametrize("status, headers, error, stops, words", [
    (401, {}, AuthFailed, True, "API key was refused"),
    (402, {}, OutOfCredits, True, "credits"),
    (403, {}, OutOfCredits, True, "credits"),
    (429, {"Retry-After": "30"}, RateLimited, True, "retry after 30 s"),
    (500, {}, Unavailable, False, "server error 500"),
    (502, {}, Unavailable, False, "server error 502"),
    (422, {}, BadAnswer, False, "request refused (422)"),
])
def test_each_failure_is_sorted_into_what_the_cycle_does_about_it(provider_replay, http_session, status, headers, error, stops,
                                                                  words):
    provider_replay.answer("POST", SEARCH, status=status, body={"error": "nope"}, headers=headers)
    with pytest.raises(error) as raised:
        apollo.people_search(filters={}, page=1, per_page=10, session=http_session)
    assert raised.value.stop_source is stops and words in str(raised.value)
    assert KEY not in str(raised.value)
    if status == 429:
        assert raised.value.retry_after == 30


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"people": [', b"[1, 2]", b'{"people": "many"}'])
def test_an_answer_that_is_not_the_documented_json_is_a_bad_answer(provider_replay, http_session, body):
    provider_replay.answer("POST", SEARCH, body=body)
    with pytest.raises(BadAnswer):
        apollo.people_search(filters={}, page=1, per_page=10, session=http_session)


def test_a_server_too_slow_to_answer_is_unavailable_within_the_time_limit(provider_replay, http_session):
    provider_replay.answer("POST", SEARCH, body={"people": []}, delay=2.5)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="no answer within 1 s"):
        apollo.people_search(filters={}, page=1, per_page=10, session=http_session)
    assert time.monotonic() - started < 2.4


def test_a_server_that_is_not_there_is_unavailable(settings, http_session):
    settings.APOLLO_BASE_URL = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(Unavailable, match="cannot be reached"):
        apollo.people_search(filters={}, page=1, per_page=10, session=http_session)
