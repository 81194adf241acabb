"""The Apollo.io lead source (SPEC §10): each cycle goes on with the source's people search
where the last one stopped, reveals the people worth it within the campaign's daily credit
budget, and inserts them as leads.

- The search is free and gives no emails; a reveal (≤ 10 people a call) costs a credit per
  person matched, reserved before the call (leads.credits) and settled with the answer.
- Revealed people are inserted, and the source's place in the search moved past them, in one
  transaction: a cycle cut off after a reveal reveals that batch again (credits counted twice,
  never past the budget), and never inserts anyone twice.
- A person already in the campaign (same Apollo id) is never revealed again. People revealed
  without an email are not inserted: there is nothing to send them; they are counted.
- 429 ends the source for this cycle and the next cycles wait for Retry-After; a wrong key, no
  credits left, a server error, a timeout or a malformed answer ends it for this cycle, as an
  error of the cycle. Nothing here raises for the provider's problems.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.dateparse import parse_datetime

from campaigns.models import Campaign
from leads.clients import apollo
from leads.clients.http import AuthFailed, ProviderError, RateLimited, text_of
from leads.credits import Outcome, Provider, credits_reserve, credits_settle
from leads.models import Lead, LeadSource
from leads.rows import LeadRow, RowProblem, lead_row_clean

logger = logging.getLogger(__name__)

# The search is read in pages of this size: the page kept in a source's state counts them.
PAGE_SIZE = 100
# Pages read in one cycle at most (a search whose people are all here already moves on fast).
MAX_PAGES_PER_CYCLE = 5
DEFAULT_PER_CYCLE, MAX_PER_CYCLE = 25, 1000
# Apollo's usual employee ranges, as its filter takes them ("10001," is "more than 10,000").
EMPLOYEE_RANGES = ("1,10", "11,20", "21,50", "51,100", "101,200", "201,500", "501,1000", "1001,2000", "2001,5000",
                   "5001,10000", "10001,")
LIST_FILTERS = ("person_titles", "person_seniorities", "person_locations", "organization_locations",
                "organization_num_employees_ranges", "q_organization_domains_list")
MAX_LIST_ITEMS, MAX_ITEM_LENGTH = 100, 200
# A revealed person's record is kept on the lead (source_data["apollo"]) up to this size.
MAX_RECORD_CHARS = 50_000
# When Apollo rate-limits without saying how long to wait.
DEFAULT_RETRY_AFTER = 60


def apollo_settings_clean(raw) -> dict:
    """A source's settings as the search takes them: Apollo's filter names, lists of text,
    known seniorities and employee ranges, and `per_cycle`. Raises ValidationError naming
    each field at fault; at least one filter is required (a search of everyone is a mistake)."""
    if not isinstance(raw, dict):
        raise ValidationError("The settings of an Apollo source are an object of filters.")
    errors, clean = {}, {}
    unknown = sorted(set(raw) - set(apollo.SEARCH_FILTERS) - {"per_cycle"})
    if unknown:
        errors["settings"] = f"Unknown setting(s): {', '.join(map(str, unknown))[:200]}."
    for name in LIST_FILTERS:
        value = raw.get(name) or []
        if isinstance(value, str):  # one item: never split, "Austin, Texas" and "1,10" hold commas
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            errors[name] = "A list of text."
            continue
        items = list(dict.fromkeys(" ".join(item.split()) for item in value if item.strip()))
        if len(items) > MAX_LIST_ITEMS or any(len(item) > MAX_ITEM_LENGTH for item in items):
            errors[name] = f"At most {MAX_LIST_ITEMS} items of {MAX_ITEM_LENGTH} characters."
            continue
        allowed = {"person_seniorities": apollo.SENIORITIES, "organization_num_employees_ranges": EMPLOYEE_RANGES}
        if name in allowed and (bad := [item for item in items if item not in allowed[name]]):
            errors[name] = f"Unknown: {', '.join(bad)[:200]}. Choose from {', '.join(allowed[name])}."
            continue
        if items:
            clean[name] = items
    keywords = raw.get("q_keywords") or ""
    if not isinstance(keywords, str) or len(keywords) > MAX_ITEM_LENGTH:
        errors["q_keywords"] = f"Text of at most {MAX_ITEM_LENGTH} characters."
    elif keywords.strip():
        clean["q_keywords"] = " ".join(keywords.split())
    per_cycle = raw.get("per_cycle", DEFAULT_PER_CYCLE)
    if isinstance(per_cycle, bool) or not isinstance(per_cycle, int) or not 1 <= per_cycle <= MAX_PER_CYCLE:
        errors["per_cycle"] = f"A whole number from 1 to {MAX_PER_CYCLE}."
    else:
        clean["per_cycle"] = per_cycle
    if not errors and not set(clean) - {"per_cycle"}:
        errors["settings"] = "Give at least one filter (titles, seniorities, locations, sizes, keywords or domains)."
    if errors:
        raise ValidationError(errors)
    return clean


def apollo_source_save(*, campaign: Campaign, name: str, active: bool, settings: dict,
                       source: LeadSource | None = None) -> LeadSource:
    """Keep an Apollo source of the campaign (a new one, or `source`) with its settings as
    apollo_settings_clean leaves them (it raises ValidationError for others). The source's place
    in its search is the cycle's to write and is left alone: the next cycle starts the search
    again at page 1 when the filters changed."""
    settings = apollo_settings_clean(settings)
    source = source or LeadSource(campaign=campaign)
    source.campaign, source.kind, source.name, source.active, source.settings = (
        campaign, LeadSource.Kind.APOLLO, name, active, settings)
    if source.pk is None:
        source.save()
    else:
        source.save(update_fields=["campaign", "kind", "name", "active", "settings"])
    return source


def search_restarts(source: LeadSource, filters: dict) -> bool:
    """Whether saving `filters` on a source that has run sends its search back to page 1."""
    state = source.state or {}
    return bool(state.get("filters")) and state["filters"] != filters_key(filters)


def apollo_progress(source: LeadSource, now: datetime) -> str:
    """Where an Apollo source's search stands, in words for staff."""
    state = source.state or {}
    try:
        filters = apollo_settings_clean(source.settings)
    except ValidationError:
        return "settings to fix"
    if not state.get("filters"):
        return "not started"
    if state["filters"] != filters_key(filters):
        return "starts again at page 1 (filters changed)"
    if state.get("exhausted"):
        return "exhausted: every person it finds was handled"
    words = f"page {state.get('page')}"
    wait_until = parse_datetime(state.get("wait_until") or "")
    if wait_until and wait_until > now:
        words += f"; Apollo asked to wait until {wait_until:%H:%M %Z}"
    return words


# People a preview shows: the first page of the search, at this size.
PREVIEW_SIZE = 10


@dataclass(frozen=True)
class SearchPreview:
    # Each person's name, title, company and location, as the search gives them (no email).
    people: list[dict[str, str]]
    # How many people Apollo reports for the filters in all; None when it does not say.
    total: int | None


def apollo_preview(*, filters: dict, session: requests.Session | None = None) -> SearchPreview:
    """The first people Apollo's search finds for `filters` (saved or not), for staff checking a
    source: the search only, which is free and gives no emails. Nobody is revealed, nothing is
    stored and no credit is counted. Raises ProviderError."""
    with session or requests.Session() as http:
        page = apollo.people_search(filters=filters, page=1, per_page=PREVIEW_SIZE, session=http)
    return SearchPreview(people=[_preview_person(p) for p in page.people[:PREVIEW_SIZE]], total=page.total_entries)


def _preview_person(person: dict) -> dict[str, str]:
    def text(value) -> str:
        return " ".join(text_of(value).split())[:MAX_ITEM_LENGTH]

    org = person.get("organization") if isinstance(person.get("organization"), dict) else {}
    # The search hides most last names (last_name_obfuscated, "Sm***h"): the reveal gives them.
    last = text(person.get("last_name")) or text(person.get("last_name_obfuscated"))
    name = text(person.get("name")) or " ".join(part for part in (text(person.get("first_name")), last) if part)
    return {"name": name, "title": text(person.get("title")), "company": text(org.get("name")),
            "location": ", ".join(part for part in (text(person.get(k)) for k in ("city", "state", "country")) if part)}


def filters_key(filters: dict) -> str:
    """A fingerprint of the search: a source whose filters changed starts again at page 1."""
    search = {name: filters[name] for name in apollo.SEARCH_FILTERS if name in filters}
    return hashlib.sha256(json.dumps(search, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ApolloRun:
    """What one cycle did with an Apollo source."""

    imported: int = 0
    revealed: int = 0
    # People a reveal was asked for (per_cycle counts them).
    revealed_asked: int = 0
    without_email: int = 0
    credits: int = 0
    notes: list[str] = field(default_factory=list)
    error: str = ""
    # Why the source did not run at all (no key), as the cycle's note "source X skipped: …".
    skipped: str = ""
    rejected: list[RowProblem] = field(default_factory=list)


def apollo_discover(*, source: LeadSource, now: datetime, limit: int, deadline: float | None = None,
                    session: requests.Session | None = None) -> ApolloRun:
    """Go on with the source's search: reveal and insert up to its `per_cycle` people (and
    `limit` new leads), within the campaign's daily Apollo credit budget; no call starts after
    `deadline` (a time.monotonic(), the cycle's budget)."""
    run = ApolloRun()
    if not settings.APOLLO_API_KEY:
        run.skipped = "APOLLO_API_KEY is not set"
        return run
    try:
        filters = apollo_settings_clean(source.settings)
    except ValidationError as exc:
        run.error = f"settings: {'; '.join(f'{k}: {v[0]}' for k, v in exc.message_dict.items())}"
        return run
    state = _state_current(source, filters)
    wait_until = parse_datetime(state.get("wait_until") or "")
    if wait_until and wait_until > now:
        run.notes.append(f"Apollo asked to wait until {wait_until:%H:%M:%S %Z}: skipped this cycle")
        return run
    if state.get("exhausted"):
        run.notes.append("the search is exhausted: every person it finds was handled; change the filters for more")
        return run
    wanted = min(filters["per_cycle"], limit)
    with session or requests.Session() as http:
        try:
            _run(source, filters, state, now, wanted, http, run, deadline)
        except RateLimited as exc:
            wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER
            _state_save(source, {**source.state, "wait_until": (now + timedelta(seconds=wait)).isoformat()})
            run.error = f"{exc}; the source stops for this cycle"
        except AuthFailed as exc:
            run.error = f"{exc}; the source is skipped until the key is fixed"
        except ProviderError as exc:
            run.error = f"{exc}; the source stops for this cycle"
        except _MovedOn:
            run.notes.append("another run moved this source on meanwhile: it stops here for this cycle")
    return run


class _MovedOn(Exception):
    pass


def _run(source, filters, state, now, wanted, http, run, deadline) -> None:
    """Read the search from the source's place on, revealing people ≤ 10 at a time until
    `wanted` were revealed, the budget is used, the cycle's time is up or the search ends."""

    def time_up() -> bool:
        if deadline is not None and time.monotonic() >= deadline:
            run.notes.append("the cycle's time budget is used: the search goes on next cycle")
            return True
        return False

    for _ in range(MAX_PAGES_PER_CYCLE):
        if time_up():
            return
        page = apollo.people_search(filters=filters, page=state["page"], per_page=PAGE_SIZE, session=http)
        people = page.people[state["index"]:]
        while people and run.revealed_asked < wanted:
            if time_up():
                return
            chunk = people[: apollo.REVEAL_BATCH]
            worth = _worth_revealing(source, chunk)
            asked = min(len(worth), wanted - run.revealed_asked)
            matches, short = [], False
            if asked:
                usage = credits_reserve(campaign=source.campaign, provider=Provider.APOLLO,
                                        endpoint="people/bulk_match", wanted=asked, now=now, source=source)
                if usage is None:
                    run.notes.append(_budget_note(source))
                    return
                granted, short = usage.credits, usage.credits < asked
                if len(worth) > granted:  # reveal that many; the people after them wait
                    last = next(i for i, person in enumerate(chunk) if person is worth[granted - 1])
                    chunk = chunk[: last + 1]
                    worth = worth[:granted]
                matches = _reveal(worth, usage, now, http)
                run.credits += usage.credits
                run.revealed_asked += len(worth)
            state = {**state, "index": state["index"] + len(chunk)}
            _insert(source, matches, state, now, run)
            people = people[len(chunk):]
            if short:
                run.notes.append(_budget_note(source))
                return
        if people:
            return
        if not page.people and page.page < page.total_pages:
            run.notes.append(f"Apollo answered page {page.page} of {page.total_pages} empty: it is asked again next cycle")
            return
        state = {**state, "exhausted": True} if page.last else {**state, "page": state["page"] + 1, "index": 0}
        _state_save(source, state, expect=source.state)
        if page.last:
            run.notes.append("the search is exhausted: every person it finds was handled")
            return
        if run.revealed_asked >= wanted:
            return


def _budget_note(source: LeadSource) -> str:
    return (f"the campaign's Apollo budget of {source.campaign.apollo_credits_per_day} credits a day is used: "
            "the search goes on tomorrow")


def _worth_revealing(source: LeadSource, people: list[dict]) -> list[dict]:
    """People worth a credit: not in the campaign already, and not known to have no email."""
    ids = [f"apollo:{apollo.person_id(p)}" for p in people]
    here = set(Lead.objects.filter(campaign_id=source.campaign_id, external_id__in=ids).values_list("external_id", flat=True))
    return [p for p in people if f"apollo:{apollo.person_id(p)}" not in here and p.get("has_email") is not False]


def _reveal(people: list[dict], usage, now: datetime, http) -> list[dict]:
    """The matches of `people`, the call's credits settled: as charged, nothing when Apollo
    refused, kept when the outcome is unknown."""
    try:
        matches = apollo.people_reveal(people=people, session=http)
    except ProviderError as exc:
        credits_settle(usage=usage, now=now, outcome=Outcome.UNKNOWN if exc.maybe_charged else Outcome.REFUSED,
                       error=str(exc))
        raise
    # What it returned, without the addresses (they are on the leads, where they can be erased).
    summary = [{"id": apollo.person_id(m), "email_status": m.get("email_status"), "email": bool(m.get("email"))}
               for m in matches]
    credits_settle(usage=usage, now=now, outcome=Outcome.DONE, charged=len(matches), response={"matches": summary})
    return matches


def _row(line: int, match: dict) -> LeadRow | RowProblem | None:
    fields = apollo.match_fields(match)
    if not fields["email"]:
        return None
    row = lead_row_clean(line, {**fields, "timezone": fields.pop("time_zone")})
    if isinstance(row, LeadRow):
        row.fields["external_id"] = f"apollo:{apollo.person_id(match)}"  # the reveal keeps only ids asked for
        record = json.dumps(match, default=str)
        row.extra = {"apollo": match if len(record) <= MAX_RECORD_CHARS else {
            "id": match.get("id"), "note": f"record of {len(record):,} characters not kept"}}
    return row


def _insert(source: LeadSource, matches: list[dict], state: dict, now: datetime, run: ApolloRun) -> None:
    """Insert the revealed people and move the source past them, in one transaction."""
    from leads.importing import leads_insert  # importing imports the sources

    rows = []
    for line, match in enumerate(matches, start=1):
        row = _row(line, match)
        if row is None:
            run.without_email += 1
        else:
            rows.append(row)
    run.revealed += len(matches)
    with transaction.atomic():
        _state_save(source, state, expect=source.state)
        report = leads_insert(campaign=source.campaign, rows=rows, now=now, source=source)
    run.imported += report.imported
    run.rejected += report.rejected


def _state_current(source: LeadSource, filters: dict) -> dict:
    """Where the search stands; page 1 for a new source or one whose filters changed."""
    key = filters_key(filters)
    state = source.state or {}
    if state.get("filters") != key or not isinstance(state.get("page"), int) or not isinstance(state.get("index"), int):
        state = {"filters": key, "page": 1, "index": 0}
        _state_save(source, state)
    return dict(state)


def _state_save(source: LeadSource, state: dict, *, expect: dict | None = None) -> None:
    """Keep the source's place. With `expect`, only if the row still holds it (under its row
    lock): another run that moved the source on meanwhile wins, and this one stops."""
    with transaction.atomic():
        locked = LeadSource.objects.select_for_update().only("state").get(pk=source.pk)
        if expect is not None and locked.state != expect:
            raise _MovedOn()
        LeadSource.objects.filter(pk=source.pk).update(state=state)
    source.state = state
