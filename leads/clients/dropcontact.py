"""Dropcontact (SPEC §10, ../shared/INTEGRATIONS.md): batch enrichment and email verification.

`POST /v1/enrich/all` submits up to 250 contacts and answers a request id; `GET
/v1/enrich/all/{request_id}` answers "not ready" until the results are there. Plain functions
over a `requests` session; every failure is a leads.clients.http.ProviderError.
"""

import re
from dataclasses import dataclass

import requests
from django.conf import settings

from leads.clients.http import BadAnswer, Provider, call, text_of

NAME = "Dropcontact"
SUBMIT_BATCH = 250
# A request id CAM can keep and ask for: no path separators or dot segments, no spaces.
REQUEST_ID = re.compile(r"(?!\.{1,2}$)[^/?#%\\\s]{1,500}")
# Qualifications of a found address that CAM emails; "invalid" and the unknown are not.
GOOD_QUALIFICATIONS = ("nominative@pro", "catch_all@pro")


def provider() -> Provider:
    return Provider(NAME, settings.DROPCONTACT_BASE_URL + "/v1", {"X-Access-Token": settings.DROPCONTACT_API_KEY})


def contact_body(lead) -> dict:
    """What Dropcontact is given about a lead: what CAM knows, nothing empty."""
    fields = {
        "email": lead.email, "first_name": lead.first_name, "last_name": lead.last_name,
        "company": lead.company, "job": lead.job_title,
        "linkedin": lead.linkedin_url, "website": lead.website,
    }
    return {k: v for k, v in fields.items() if v}


def enrich_submit(*, contacts: list[dict], session: requests.Session) -> str:
    """Submit at most SUBMIT_BATCH contacts; their request id."""
    if len(contacts) > SUBMIT_BATCH:
        raise ValueError(f"Dropcontact takes at most {SUBMIT_BATCH} contacts a request")
    data = call(provider(), session, "POST", "/enrich/all", body={"data": contacts, "siren": False, "language": "en"})
    request_id = data.get("request_id")
    if data.get("success") is False:  # refused in so many words: not charged
        raise BadAnswer(NAME, f"the request was not accepted: {str(data.get('error') or data.get('reason'))[:200]}",
                        maybe_charged=False)
    if not isinstance(request_id, str) or not request_id:
        raise BadAnswer(NAME, "the answer has no request id")
    if not REQUEST_ID.fullmatch(request_id):  # it goes into a URL path and a 500-character column
        raise BadAnswer(NAME, f"answered a request id CAM cannot ask for ({len(request_id)} characters)")
    return request_id


@dataclass(frozen=True)
class Results:
    ready: bool
    data: list[dict]
    reason: str = ""


def enrich_results(*, request_id: str, session: requests.Session) -> Results:
    """The results of a request, or not ready yet (ask again in a later cycle)."""
    data = call(provider(), session, "GET", f"/enrich/all/{requests.utils.quote(request_id, safe='')}")
    if data.get("success") is not True:
        return Results(ready=False, data=[], reason=str(data.get("reason") or data.get("error") or "not ready")[:200])
    rows = data.get("data")
    if not isinstance(rows, list):
        raise BadAnswer(NAME, "the results have no list of contacts")
    return Results(ready=True, data=[row if isinstance(row, dict) else {} for row in rows])


def result_fields(row: dict) -> dict:
    """One contact's results as a lead's fields, and the verified email with its qualification."""
    emails = [e for e in row.get("email") or [] if isinstance(e, dict) and e.get("email")] \
        if isinstance(row.get("email"), list) else []
    best = next((e for e in emails if e.get("qualification") in GOOD_QUALIFICATIONS), emails[0] if emails else {})
    return {
        "email": text_of(best.get("email")).lower(), "qualification": text_of(best.get("qualification")),
        "job_title": text_of(row.get("job")), "company_size": text_of(row.get("nb_employees")),
        "industry": text_of(row.get("naf5_des")), "website": text_of(row.get("website")),
        "linkedin_url": text_of(row.get("linkedin")), "company": text_of(row.get("company")),
    }
