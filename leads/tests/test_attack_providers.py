"""An outside tester's attacks on the Apollo source and Dropcontact enrichment (SPEC §10): a local
HTTP server plays a misbehaving provider. Each test showed a defect when it was written (some on
PostgreSQL only: run the suite there too); each is fixed.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import pytest
import requests
from django.core.management import call_command

from cam_project.validators import has_control_characters
from campaigns.cycle import cycle_run
from campaigns.tests.factories import CampaignFactory
from leads.apollo_source import PAGE_SIZE, apollo_discover
from leads.clients import apollo
from leads.credits import credits_used
from leads.fake_providers import json_server
from leads.importing import leads_discover
from leads.models import ApiUsage, Lead, LeadSource
from leads.tests.factories import LeadSourceFactory
# The Dropcontact tests' NEW lead and quick polls (an autouse fixture, imported to apply here too).
from leads.tests.test_dropcontact_enrichment import _quick_polls, new_lead  # noqa: F401

pytestmark = pytest.mark.django_db

SEARCH, REVEAL = "/api/v1/mixed_people/api_search", "/api/v1/people/bulk_match"
SUBMIT = "/v1/enrich/all"
FILTERS = {"person_titles": ["CEO"]}
Status = Lead.Status


def apollo_source(campaign, **settings):
    return LeadSourceFactory(campaign=campaign, name="Apollo", kind=LeadSource.Kind.APOLLO,
                             settings={**FILTERS, **settings})


def person(i):
    return {"id": f"p{i}", "first_name": f"First{i}", "last_name": "Doe", "title": "CEO",
            "organization": {"name": f"Org{i}"}}


def match(i, **more):
    return {**person(i), "email": f"first{i}@org{i}.example", "email_status": "verified", **more}


def search_page(people, page=1, total_pages=1):
    return {"people": people, "pagination": {"page": page, "per_page": PAGE_SIZE, "total_pages": total_pages}}


def contact(email, qualification="nominative@pro", **more):
    return {"email": [{"email": email, "qualification": qualification}], "job": "CTO", "nb_employees": "11-50",
            "naf5_des": "Software publishing", "website": "https://firm.example", **more}


def cycle_json(campaign) -> tuple[dict, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("run_cam_cycle", "--campaign-id", str(campaign.pk), "--json", stdout=out, stderr=err)
    except SystemExit:
        pass
    return json.loads(out.getvalue()), out.getvalue() + err.getvalue()


class Recorder:
    """A second local HTTP server (another host name: "localhost", not 127.0.0.1) that records
    every request it gets and answers an empty JSON object."""

    def __init__(self):
        self.requests = []

        def answer(method, path, headers, body):
            self.requests.append({"path": path, "headers": dict(headers)})
            return 200, {"people": [], "pagination": {}, "success": False, "reason": "not ready"}, {}

        self.httpd = json_server(answer)
        self.url = f"http://localhost:{self.httpd.server_address[1]}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def elsewhere():
    recorder = Recorder()
    yield recorder
    recorder.stop()


class Streamer:
    """A provider that answers 200 with JSON headers, then sends its body slowly: `chunk` every
    `every` seconds, for `for_seconds` (or until stopped), chunked."""

    def __init__(self, chunk=b" ", every=0.2, for_seconds=None):
        self.stopped = threading.Event()
        streamer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                start = time.monotonic()
                try:
                    self.wfile.write(b"1\r\n{\r\n")
                    while not streamer.stopped.is_set():
                        if for_seconds is not None and time.monotonic() - start > for_seconds:
                            break
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                        time.sleep(every)
                    self.wfile.write(b"2\r\n}\n\r\n0\r\n\r\n")
                except OSError:
                    pass

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self):
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the keys -------------------------------------------------------------------------------------


def test_apollo_redirecting_to_another_host_is_not_given_the_api_key(provider_replay, elsewhere, now):
    """Apollo (or anyone on its path) answers 307 to another host: CAM follows it and sends the
    x-api-key header there too (requests strips only Authorization on a cross-host redirect)."""
    campaign = CampaignFactory()
    apollo_source(campaign)
    provider_replay.answer("POST", SEARCH, status=307, body={}, headers={"Location": f"{elsewhere.url}{SEARCH}"})

    leads_discover(campaign=campaign, now=now, limit=20)

    leaked = [r for r in elsewhere.requests if "apollo-secret-key" in json.dumps(r["headers"])]
    assert leaked == [], f"the Apollo key was sent to {elsewhere.url}: {leaked}"


def test_dropcontact_redirecting_to_another_host_is_not_given_the_access_token(provider_replay, elsewhere, now):
    campaign = CampaignFactory()
    new_lead(campaign, "ann@firm.example")
    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-1", "success": True})
    for _ in range(10):
        provider_replay.answer("GET", "/v1/enrich/all/r-1", status=302,
                               headers={"Location": f"{elsewhere.url}/v1/enrich/all/r-1"}, body={})

    cycle_run(campaign=campaign, now=now, dry_run=True)

    leaked = [r for r in elsewhere.requests if "dropcontact-secret" in json.dumps(r["headers"])]
    assert leaked == [], f"the Dropcontact token was sent to {elsewhere.url}: {leaked}"


def test_a_key_echoed_back_by_apollo_never_reaches_last_error_usage_rows_or_the_cycle_json(provider_replay):
    """Providers often echo what they were given ("Invalid API key abc…"): CAM copies their
    error text into the source's last_error, ApiUsage.error and the cycle's JSON as is."""
    campaign = CampaignFactory(apollo_credits_per_day=10)
    source = apollo_source(campaign, per_cycle=1)
    provider_replay.answer("POST", SEARCH, body=search_page([person(1)]))
    provider_replay.answer("POST", REVEAL, status=403,
                           body={"error": "key apollo-secret-key is not allowed to call bulk_match"})

    result, output = cycle_json(campaign)

    source.refresh_from_db()
    usage = ApiUsage.objects.get()
    assert result["errors"], result
    assert "apollo-secret-key" not in output
    assert "apollo-secret-key" not in source.last_error
    assert "apollo-secret-key" not in usage.error


def test_a_token_echoed_back_by_dropcontact_never_reaches_the_usage_rows_or_the_cycle_json(provider_replay):
    campaign = CampaignFactory()
    new_lead(campaign, "ann@firm.example")
    provider_replay.answer("POST", SUBMIT, body={"success": False, "error": "unknown token dropcontact-secret"})

    result, output = cycle_json(campaign)

    assert result["errors"], result
    assert "dropcontact-secret" not in output
    assert all("dropcontact-secret" not in u.error for u in ApiUsage.objects.all())


# --- time and size ---------------------------------------------------------------------------------


def test_a_body_trickled_slower_than_the_time_limit_is_cut_off_at_the_time_limit(settings, http_session):
    """CAM_PROVIDER_TIMEOUT is a per-read limit: a server sending a byte every 0.2 s holds a
    call with a 1 s limit for as long as it likes (here 6 s; forever just as well)."""
    streamer = Streamer(every=0.2, for_seconds=6)
    settings.APOLLO_API_KEY, settings.APOLLO_BASE_URL = "apollo-secret-key", streamer.url
    settings.CAM_PROVIDER_TIMEOUT = 1.0
    started = time.monotonic()
    try:
        try:
            apollo.people_search(filters=FILTERS, page=1, per_page=10, session=http_session)
        except Exception:  # noqa: BLE001 — any ProviderError is fine; the time is the point
            pass
        elapsed = time.monotonic() - started
    finally:
        streamer.stop()
    assert elapsed < 3, f"a call with a 1 s time limit took {elapsed:.1f} s"


def test_an_endless_body_does_not_hold_the_call_forever(settings):
    """A chunked body that never ends: the call never returns (and its memory grows) until the
    server stops. Run in a thread; the server is stopped after the check."""
    streamer = Streamer(chunk=b" " * 65536, every=0.01)
    settings.APOLLO_API_KEY, settings.APOLLO_BASE_URL = "apollo-secret-key", streamer.url
    settings.CAM_PROVIDER_TIMEOUT = 1.0
    outcome = []

    def search():
        with requests.Session() as session:
            try:
                apollo.people_search(filters=FILTERS, page=1, per_page=10, session=session)
                outcome.append("answered")
            except Exception as exc:  # noqa: BLE001
                outcome.append(type(exc).__name__)

    worker = threading.Thread(target=search, daemon=True)
    worker.start()
    worker.join(timeout=8)
    still_running = worker.is_alive()
    streamer.stop()
    worker.join(timeout=10)
    assert not still_running, "the call was still reading an endless body after 8 s (1 s time limit)"


# --- malformed answers -------------------------------------------------------------------------------


def deep(depth=100_000):
    return ("[" * depth + "]" * depth).encode()


def test_deeply_nested_json_from_apollo_is_a_bad_answer_not_a_crashed_discover_phase(provider_replay):
    """json raises RecursionError (not ValueError) on deep nesting: it escapes `call`, the
    source and leads_discover, and the cycle reports a crashed phase (exit status 3)."""
    campaign = CampaignFactory()
    source = apollo_source(campaign)
    provider_replay.answer("POST", SEARCH, body=b'{"people": ' + deep() + b"}")

    result, _ = cycle_json(campaign)

    source.refresh_from_db()
    assert result["stopped_phases"] == [], result["errors"]
    assert not any("RecursionError" in e for e in result["errors"]), result["errors"]
    assert source.last_error, "the source's error is not recorded"


def test_deeply_nested_json_in_a_reveal_settles_its_credits_and_is_the_sources_error(provider_replay, now):
    campaign = CampaignFactory(apollo_credits_per_day=10)
    source = apollo_source(campaign, per_cycle=2)
    provider_replay.answer("POST", SEARCH, body=search_page([person(1), person(2)]))
    provider_replay.answer("POST", REVEAL, body=b'{"matches": ' + deep() + b"}")

    try:
        run = apollo_discover(source=source, now=now, limit=20)
    except RecursionError:
        run = None

    assert run is not None and run.error, "a malformed reveal answer crashed the source"
    assert ApiUsage.objects.get().outcome != "reserved", "the reveal's credits were never settled"


def test_deeply_nested_json_from_dropcontact_does_not_crash_the_enrich_phase(provider_replay, now):
    campaign = CampaignFactory()
    new_lead(campaign, "ann@firm.example")
    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-1", "success": True})
    for _ in range(10):
        provider_replay.answer("GET", "/v1/enrich/all/r-1", body=b'{"success": true, "data": ' + deep() + b"}")

    result = cycle_run(campaign=campaign, now=now, dry_run=True)

    assert "enrich" not in result.stopped_phases, result.errors
    assert not any("RecursionError" in e for e in result.errors), result.errors


@pytest.mark.parametrize("odd_email", [None, 42, ["x@y.example"]])
def test_dropcontact_results_with_an_odd_address_in_an_extra_row_do_not_crash_or_lose_the_results(
        provider_replay, now, odd_email):
    """More rows than submitted are matched by address with `e.get("email", "").lower()`: an
    address that is null or not text raises AttributeError after the request was marked done,
    so the results are lost, the enrich phase crashes, and the leads are paid for again."""
    campaign = CampaignFactory(dropcontact_credits_per_day=100)
    ann, bob = new_lead(campaign, "ann@firm.example"), new_lead(campaign, "bob@firm.example")
    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-1", "success": True})
    rows = [contact("ann@firm.example"), contact("bob@firm.example"),
            {"email": [{"email": odd_email, "qualification": "invalid"}]}]
    provider_replay.answer("GET", "/v1/enrich/all/r-1", body={"success": True, "data": rows})
    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-2", "success": True})
    for _ in range(10):
        provider_replay.answer("GET", "/v1/enrich/all/r-2", body={"success": False, "reason": "not ready"})

    first = cycle_run(campaign=campaign, now=now, dry_run=True)
    second = cycle_run(campaign=campaign, now=now, dry_run=True)

    assert "enrich" not in first.stopped_phases, first.errors
    ann.refresh_from_db()
    bob.refresh_from_db()
    assert (ann.status, bob.status) == (Status.ENRICHED, Status.ENRICHED)
    assert credits_used(campaign=campaign, provider="dropcontact", day=now.date()) == 2, second.errors


@pytest.mark.parametrize("job", ["CTO\x1b[2J\x1b[31m", "CTO\r\nBcc: all@victim.example", "CTO\x00"])
def test_dropcontact_cannot_write_control_characters_into_a_leads_fields(provider_replay, now, job):
    """An import refuses control characters in a job title (they reach mail headers and
    terminals); Dropcontact's results fill the same fields unchecked. (With PostgreSQL, the NUL
    case crashes the enrich phase: the request is done, its results lost, the lead paid again.)"""
    campaign = CampaignFactory()
    ann = new_lead(campaign, "ann@firm.example")
    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-1", "success": True})
    provider_replay.answer("GET", "/v1/enrich/all/r-1",
                           body={"success": True, "data": [contact("ann@firm.example", job=job, naf5_des=job)]})

    result = cycle_run(campaign=campaign, now=now, dry_run=True)

    assert "enrich" not in result.stopped_phases, result.errors
    ann.refresh_from_db()
    assert not has_control_characters(ann.job_title), repr(ann.job_title)
    assert not has_control_characters(ann.industry), repr(ann.industry)


# --- what Apollo gives back ---------------------------------------------------------------------------


def test_matches_for_people_not_asked_for_are_not_inserted_past_the_cycles_limits(provider_replay, now):
    """per_cycle 1 and a cycle limit of 1: one person is revealed, Apollo answers 10 matches,
    and all 10 become leads of the campaign."""
    campaign = CampaignFactory(apollo_credits_per_day=10)
    apollo_source(campaign, per_cycle=1)
    provider_replay.answer("POST", SEARCH, body=search_page([person(1), person(2)], total_pages=2))
    provider_replay.answer("POST", REVEAL, body={"matches": [match(1)] + [match(i) for i in range(100, 109)]})

    result = leads_discover(campaign=campaign, now=now, limit=1)

    asked = [d["id"] for d in provider_replay.requests[-1]["body"]["details"]]
    assert asked == ["p1"]
    assert sorted(Lead.objects.values_list("external_id", flat=True)) == ["apollo:p1"]
    assert result.count <= 1


def test_the_same_person_twice_in_a_page_is_revealed_and_reserved_once(provider_replay, now):
    campaign = CampaignFactory(apollo_credits_per_day=10)
    apollo_source(campaign, per_cycle=10)
    provider_replay.answer("POST", SEARCH, body=search_page([person(1), person(1), person(2)]))
    provider_replay.answer("POST", REVEAL, body={"matches": [match(1), match(1), match(2)]})

    run_ = apollo_discover(source=LeadSource.objects.get(), now=now, limit=20)

    asked = [d["id"] for d in provider_replay.requests[-1]["body"]["details"]]
    assert sorted(asked) == ["p1", "p2"], f"asked Apollo to reveal (and pay for) {asked}"
    assert run_.credits == 2 and credits_used(campaign=campaign, provider="apollo", day=now.date()) == 2


def test_a_person_whose_id_is_too_long_to_keep_is_never_paid_for(provider_replay, now):
    """A lead keeps its Apollo id (external_id, 100 characters) to be known again: a person whose
    id does not fit could never be, and would be revealed (paid for) at every new start of the
    search; such a person is left out of the search's page, and never revealed."""
    campaign = CampaignFactory(apollo_credits_per_day=10)
    source = apollo_source(campaign, per_cycle=5)
    long_one = {**person(1), "id": "x" * 150}
    provider_replay.answer("POST", SEARCH, body=search_page([long_one, person(2)]))
    provider_replay.answer("POST", REVEAL, body={"matches": [{**match(1), "id": "x" * 150}, match(2)]})

    apollo_discover(source=source, now=now, limit=20)

    reveals = [r["body"]["details"] for r in provider_replay.requests if r["path"] == REVEAL]
    assert reveals == [[{"id": "p2"}]]
    assert list(Lead.objects.values_list("external_id", flat=True)) == ["apollo:p2"]
    assert credits_used(campaign=campaign, provider="apollo", day=now.date()) == 1


def test_a_match_carrying_a_nul_character_is_inserted_or_rejected_not_paid_for_every_cycle(provider_replay, now):
    """PostgreSQL: a NUL anywhere in the raw record kept on the lead (source_data) makes the
    insert fail after the reveal was paid; the state is rolled back, so every cycle pays for the
    same people again and crashes again."""
    campaign = CampaignFactory(apollo_credits_per_day=10)
    apollo_source(campaign, per_cycle=2)
    for _ in range(2):
        provider_replay.answer("POST", SEARCH, body=search_page([person(1), person(2)]))
        provider_replay.answer("POST", REVEAL, body={"matches": [match(1, headline="CEO\x00 at Org1"), match(2)]})

    first = cycle_run(campaign=campaign, now=now, dry_run=True)
    second = cycle_run(campaign=campaign, now=now, dry_run=True)

    spent = credits_used(campaign=campaign, provider="apollo", day=now.date())
    inserted = sorted(Lead.objects.values_list("external_id", flat=True))
    assert (first.stopped_phases, spent) == ([], 2), (inserted, first.errors, second.errors)
    assert "apollo:p2" in inserted


# --- Dropcontact's request ids ---------------------------------------------------------------------


def test_a_long_dropcontact_request_id_does_not_crash_the_phase_or_get_the_leads_paid_for_twice(provider_replay, now):
    """PostgreSQL: request_id is a varchar(200); a longer id answered by Dropcontact raises
    DataError (only IntegrityError is caught) after the submission was paid: the enrich phase
    crashes and the next cycle submits (pays for) the same leads again."""
    campaign = CampaignFactory(dropcontact_credits_per_day=100)
    new_lead(campaign, "ann@firm.example")
    long_id = "r" * 300
    provider_replay.answer("POST", SUBMIT, body={"request_id": long_id, "success": True})
    provider_replay.answer("POST", SUBMIT, body={"request_id": "r-2", "success": True})
    for path in (f"/v1/enrich/all/{long_id}", "/v1/enrich/all/r-2"):
        for _ in range(10):
            provider_replay.answer("GET", path, body={"success": False, "reason": "not ready"})

    first = cycle_run(campaign=campaign, now=now, dry_run=True)
    second = cycle_run(campaign=campaign, now=now, dry_run=True)

    spent = credits_used(campaign=campaign, provider="dropcontact", day=now.date())
    assert (first.stopped_phases, spent) == ([], 1), (first.errors, second.errors)


@pytest.mark.parametrize("request_id", ["..", ".", "a/../b", "r?x=1"])
def test_a_dropcontact_request_id_that_is_no_address_of_its_own_is_never_asked_for_elsewhere(
        provider_replay, now, request_id):
    """"." and ".." pass URL quoting unchanged and are removed as dot segments, so CAM would ask
    GET /v1/enrich/ (or /v1/enrich/all/) and take that answer as the request's results. Such an
    id is the cycle's error; its credit counts as spent (Dropcontact took the request)."""
    campaign = CampaignFactory()
    new_lead(campaign, "ann@firm.example")
    provider_replay.answer("POST", SUBMIT, body={"request_id": request_id, "success": True})

    result = cycle_run(campaign=campaign, now=now, dry_run=True)

    assert [r["path"] for r in provider_replay.requests if r["method"] == "GET"] == []
    assert any("answered a request id CAM cannot ask for" in error for error in result.errors), result.errors
    usage = ApiUsage.objects.get()
    assert (usage.outcome, usage.credits) == ("unknown", 1)
    assert Lead.objects.get().enrichment_request is None


# --- the cycle's time budget ---------------------------------------------------------------------------


def test_the_apollo_source_stops_starting_reveals_once_the_cycles_budget_is_used(provider_replay, now):
    """The cycle's budget (CAM_CYCLE_BUDGET_SECONDS) is only looked at between phases: an Apollo
    source with per_cycle 100 goes on making its 10 reveal calls, each just under the provider's
    time limit, long after the budget (and, at scale, the lease: another cycle may then take the
    campaign and pay for the same people)."""
    campaign = CampaignFactory(apollo_credits_per_day=1000)
    apollo_source(campaign, per_cycle=100)
    provider_replay.answer("POST", SEARCH, body=search_page([person(i) for i in range(100)], total_pages=5))
    for start in range(0, 100, 10):
        provider_replay.answer("POST", REVEAL, body={"matches": [match(i) for i in range(start, start + 10)]},
                               delay=0.6)
    started = time.monotonic()

    cycle_run(campaign=campaign, now=now, dry_run=True, budget_seconds=1)

    elapsed = time.monotonic() - started
    reveals = sum(1 for r in provider_replay.requests if r["path"] == REVEAL)
    assert elapsed < 1 + 1 + 1, f"a cycle with a budget of 1 s took {elapsed:.1f} s ({reveals} reveal calls)"


# --- a key that cannot be sent ---------------------------------------------------------------------------


def test_a_key_with_a_non_latin1_character_is_a_provider_error_and_reserves_nothing_for_ever(provider_replay, now,
                                                                                              settings):
    """A key pasted with a typographic quote: http.client raises UnicodeEncodeError (not a
    RequestException), which escapes `call`: both phases crash (exit status 3) and every cycle
    leaves a Dropcontact reservation of the whole batch 'reserved' for good, eating the day's
    budget without a single call made."""
    settings.APOLLO_API_KEY = "apollo-secret-key\u2019"
    settings.DROPCONTACT_API_KEY = "dropcontact-secret\u2019"
    campaign = CampaignFactory(apollo_credits_per_day=10, dropcontact_credits_per_day=10)
    apollo_source(campaign)
    new_lead(campaign, "ann@firm.example")

    first = cycle_run(campaign=campaign, now=now, dry_run=True)
    cycle_run(campaign=campaign, now=now, dry_run=True)

    assert first.stopped_phases == [], first.errors
    assert credits_used(campaign=campaign, provider="dropcontact", day=now.date()) == 0, list(
        ApiUsage.objects.values_list("provider", "credits", "outcome"))
