"""Enrichment, email verification and scoring of leads.

ENRICHERS maps a name to a function that takes a batch of leads and returns, per lead id, the
data it found: `{"data": {...}, "fields": {lead field: better value}}`; the enricher
decides whether a value replaces what the source gave. An enricher that fails raises; the
pipeline reports it and goes on. Dropcontact, which answers later, is leads.dropcontact_enrichment.
"""

import re
from collections.abc import Callable

from django.conf import settings
from email_validator import EmailNotValidError, EmailUndeliverableError, validate_email

from leads.models import Lead

FREE_MAIL_DOMAINS = frozenset(
    """gmail.com googlemail.com yahoo.com yahoo.co.uk yahoo.fr hotmail.com hotmail.co.uk
    hotmail.fr outlook.com live.com msn.com icloud.com me.com aol.com proton.me protonmail.com
    gmx.com gmx.de gmx.net web.de mail.com yandex.com yandex.ru orange.fr free.fr laposte.net
    zoho.com fastmail.com""".split()
)

_SIZE_BUCKETS = ((10, "1-10"), (50, "11-50"), (200, "51-200"), (500, "201-500"), (1000, "501-1000"),
                 (5000, "1001-5000"), (10000, "5001-10000"))
_SENIORITY = (
    ("executive", r"\b(founder|co-?founder|owner|ceo|cto|cfo|coo|cmo|chief|president|partner|managing director)\b"),
    ("vp", r"\b(vp|svp|evp|vice president|head of)\b"),
    ("director", r"\bdirector\b"),
    ("manager", r"\b(manager|lead|principal)\b"),
)
# Extra source columns worth carrying into the enrichment data, under a stable name (website,
# LinkedIn, city, country and time zone are the lead's own fields).
_EXTRA_KEYS = {"domain": "website", "phone": "phone", "location": "location"}


def company_size_bucket(raw: str) -> str:
    """'42' or '1,200 employees' → the usual LinkedIn bucket; anything else is kept as given."""
    digits = re.fullmatch(r"\s*(\d[\d,. ]*)\s*(employees?)?\s*", raw or "", re.IGNORECASE)
    if not digits:
        return (raw or "").strip()
    count = int(re.sub(r"\D", "", digits.group(1)) or 0)
    for ceiling, label in _SIZE_BUCKETS:
        if count <= ceiling:
            return label
    return "10001+"


def job_seniority(title: str) -> str:
    lowered = (title or "").lower()
    if not lowered:
        return ""
    for label, pattern in _SENIORITY:
        if re.search(pattern, lowered):
            return label
    return "individual contributor"


def source_fields_enrich(leads: list[Lead]) -> dict[int, dict]:
    """What can be learned from the fields the source itself gave, without any network."""
    found = {}
    for lead in leads:
        domain = lead.email.rpartition("@")[2]
        free_mail = domain in FREE_MAIL_DOMAINS
        data = {"email_domain": domain, "free_mail": free_mail}
        if not free_mail:
            data["company_domain"] = domain
        if lead.job_title:
            data["seniority"] = job_seniority(lead.job_title)
        for key, value in (lead.source_data or {}).items():
            name = _EXTRA_KEYS.get(key.strip().lower())
            if name and value:
                data[name] = value
        fields = {}
        if lead.company_size:
            bucket = company_size_bucket(lead.company_size)
            if bucket != lead.company_size:
                fields["company_size"] = bucket
        found[lead.pk] = {"data": data, "fields": fields}
    return found


# Dropcontact is asynchronous (submit, then ask for results): leads.dropcontact_enrichment,
# called by leads.services.leads_enrich before these.
ENRICHERS: dict[str, Callable[[list[Lead]], dict[int, dict]]] = {
    "source": source_fields_enrich,
}


def email_verify(email: str, *, check_dns: bool | None = None) -> dict:
    """Syntax always; the domain's mail servers (DNS) only when CAM_VERIFY_EMAIL_DNS is on."""
    if check_dns is None:
        check_dns = settings.CAM_VERIFY_EMAIL_DNS
    result = {"valid": False, "reason": "", "checked_dns": check_dns}
    try:
        validate_email(email, check_deliverability=check_dns, timeout=5)
    except EmailUndeliverableError as exc:
        result["reason"] = f"undeliverable: {exc}"
    except EmailNotValidError as exc:
        result["reason"] = f"invalid: {exc}"
    else:
        result["valid"] = True
    return result


def lead_score(lead: Lead) -> float:
    """Base 0.3; +0.15 each for job title, company size and industry; +0.2 for a valid email."""
    score = 0.3
    score += 0.15 if lead.job_title else 0
    score += 0.15 if lead.company_size else 0
    score += 0.15 if lead.industry else 0
    score += 0.2 if lead.email_valid else 0
    return round(min(score, 1.0), 4)
