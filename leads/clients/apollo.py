"""Apollo.io (SPEC §10, ../shared/INTEGRATIONS.md): people search, then reveal.

Plain functions over a `requests` session. The search (`POST /api/v1/mixed_people/api_search`)
costs no credits and gives no emails; the reveal (`POST /api/v1/people/bulk_match`, at most 10
people a call) costs credits per person matched and gives the email. Every failure is a
leads.clients.http.ProviderError.
"""

from dataclasses import dataclass

import requests
from django.conf import settings

from leads.clients.http import BadAnswer, Provider, call, text_of

NAME = "Apollo"
# A source's settings use Apollo's own parameter names (SPEC §10).
SEARCH_FILTERS = (
    "person_titles", "person_seniorities", "person_locations", "organization_locations",
    "organization_num_employees_ranges", "q_keywords", "q_organization_domains_list",
)
SENIORITIES = ("owner", "founder", "c_suite", "partner", "vp", "head", "director", "manager", "senior", "entry",
               "intern")
REVEAL_BATCH = 10
MAX_PER_PAGE = 100


def provider() -> Provider:
    return Provider(NAME, settings.APOLLO_BASE_URL + "/api/v1",
                    {"x-api-key": settings.APOLLO_API_KEY, "Cache-Control": "no-cache"})


@dataclass(frozen=True)
class SearchPage:
    people: list[dict]
    page: int
    total_pages: int
    # How many people Apollo reports for the filters in all (None when it does not say).
    total_entries: int | None = None

    @property
    def last(self) -> bool:
        """No page after this one: the search is exhausted."""
        return self.page >= self.total_pages or not self.people


def search_body(filters: dict, *, page: int, per_page: int) -> dict:
    """The search request: the known filters that have a value, and the page."""
    body = {name: filters[name] for name in SEARCH_FILTERS if filters.get(name)}
    return {**body, "page": page, "per_page": max(1, min(per_page, MAX_PER_PAGE))}


def people_search(*, filters: dict, page: int, per_page: int, session: requests.Session) -> SearchPage:
    data = call(provider(), session, "POST", "/mixed_people/api_search",
                body=search_body(filters, page=page, per_page=per_page))
    people = data.get("people")
    if people is None:
        people = []
    if not isinstance(people, list):
        raise BadAnswer(NAME, "the search answer has no list of people")
    # At most the page asked for, each person once, with an id fit to be kept (Apollo's are 24 hex digits).
    seen, unique = set(), []
    for person in people[:per_page]:
        if (found := person_id(person)) and found not in seen:
            seen.add(found)
            unique.append(person)
    people = unique
    pagination = data.get("pagination") if isinstance(data.get("pagination"), dict) else {}
    total_pages, total_entries = pagination.get("total_pages"), pagination.get("total_entries")
    return SearchPage(people=people, page=page,
                      total_pages=total_pages if _count(total_pages) else page,
                      total_entries=total_entries if _count(total_entries) else None)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


MAX_ID_LENGTH = 64


def person_id(person) -> str:
    """A person's Apollo id as text, or "" when it has none fit to be kept."""
    value = person.get("id") if isinstance(person, dict) else None
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    return text if 0 < len(text) <= MAX_ID_LENGTH and text.isprintable() else ""


def people_reveal(*, people: list[dict], session: requests.Session) -> list[dict]:
    """The matches (with email) for at most REVEAL_BATCH people found by the search; people
    Apollo could not match are left out."""
    if len(people) > REVEAL_BATCH:
        raise ValueError(f"Apollo reveals at most {REVEAL_BATCH} people a call")
    if not people:
        return []
    asked = [person_id(p) for p in people]
    data = call(provider(), session, "POST", "/people/bulk_match",
                body={"details": [{"id": i} for i in asked], "reveal_personal_emails": False})
    matches = data.get("matches")
    if not isinstance(matches, list):
        raise BadAnswer(NAME, "the reveal answer has no list of matches")
    # Only the people asked for, each once: a match for anyone else was not paid for by this call.
    by_id = {}
    for match in matches:
        if isinstance(match, dict) and person_id(match) in asked:
            by_id.setdefault(person_id(match), match)
    return [by_id[i] for i in asked if i in by_id]


def match_fields(match: dict) -> dict[str, str]:
    """A match as a lead's fields (the row an import would give), text only."""
    org = match.get("organization") if isinstance(match.get("organization"), dict) else {}
    return {
        "email": text_of(match.get("email")),
        "first_name": text_of(match.get("first_name")),
        "last_name": text_of(match.get("last_name")),
        "job_title": text_of(match.get("title")),
        "company": text_of(org.get("name")),
        "company_size": text_of(org.get("estimated_num_employees")),
        "industry": text_of(org.get("industry")),
        "website": text_of(org.get("website_url")),
        "city": text_of(match.get("city")),
        "country": text_of(match.get("country")),
        "linkedin_url": text_of(match.get("linkedin_url")),
        "time_zone": text_of(match.get("time_zone")),
        "email_status": text_of(match.get("email_status")),
    }
