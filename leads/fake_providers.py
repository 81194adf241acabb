"""A stand-in for Apollo.io and Dropcontact on 127.0.0.1, answering in the shapes their public
documentation gives (../shared/INTEGRATIONS.md) from a made-up directory of people. It lets a
newcomer watch an Apollo source work (`cam_demo --with-fake-apollo`) and the tests run a whole
cycle, with several processes, without the internet. Never started unless asked.

Made-up people are the same for the same size: person i works at company i // 3, has an
address unless i % 7 == 6, and Dropcontact finds every ninth address invalid.
"""

import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FIRST = ("Maya", "Liam", "Sofia", "Noah", "Emma", "Lucas", "Chloe", "Ethan", "Zoe", "Adam", "Lena", "Omar")
LAST = ("Chen", "Martin", "Rossi", "Novak", "Dubois", "Schmidt", "Garcia", "Kowalski", "Silva", "Jensen")
TITLES = ("CEO", "CTO", "VP Marketing", "Head of Growth", "Marketing Director", "Founder", "COO", "Sales Manager")
PLACES = (("Paris", "France", "Europe/Paris"), ("Berlin", "Germany", "Europe/Berlin"),
          ("Austin", "United States", "America/Chicago"), ("London", "United Kingdom", "Europe/London"),
          ("Lisbon", "Portugal", "Europe/Lisbon"))
INDUSTRIES = ("computer software", "marketing and advertising", "information technology and services", "internet")
# Dropcontact answers "not ready" this many times before the results.
NOT_READY_POLLS = 1


def _person(i: int) -> dict:
    first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    company = f"Company{i // 3:04d}"
    city, country, zone = PLACES[i % len(PLACES)]
    return {
        "id": f"fake{i:05d}", "first_name": first, "last_name": last, "name": f"{first} {last}",
        "title": TITLES[i % len(TITLES)], "has_email": True,
        "organization": {"name": company, "website_url": f"https://{company.lower()}.example",
                         "estimated_num_employees": 10 + (i * 37) % 900, "industry": INDUSTRIES[i % len(INDUSTRIES)]},
        "_private": {"city": city, "country": country, "time_zone": zone,
                     "email": "" if i % 7 == 6 else f"{first.lower()}.{last.lower()}{i}@{company.lower()}.example",
                     "linkedin_url": f"https://www.linkedin.com/in/{first.lower()}-{last.lower()}-{i}"},
    }


def json_server(answer, port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1, serving in a background thread: `answer(method, path,
    headers, body bytes)` gives (status, a JSON value or raw bytes, extra headers) for each
    GET and POST. Stop it with shutdown() and server_close()."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            status, body, headers = answer(self.command, self.path, self.headers, self.rfile.read(length))
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = _serve

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    # A short poll interval: shutdown() waits for it (tests start and stop many servers).
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd


class FakeProviders:
    """Both providers on one local port: Apollo under /api/v1, Dropcontact under /v1."""

    def __init__(self, people: int = 240):
        self.people = [_person(i) for i in range(people)]
        self.by_id = {p["id"]: p for p in self.people}
        self.calls: dict[str, int] = {}
        self.revealed_ids: list[str] = []
        self.requests: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # --- Apollo ---------------------------------------------------------------------------------

    def apollo_search(self, body: dict) -> dict:
        page, per_page = max(int(body.get("page") or 1), 1), min(max(int(body.get("per_page") or 10), 1), 100)
        found = [{k: v for k, v in p.items() if k != "_private"} for p in self.people]
        total_pages = -(-len(found) // per_page)
        return {"people": found[(page - 1) * per_page: page * per_page],
                "pagination": {"page": page, "per_page": per_page, "total_entries": len(found),
                               "total_pages": total_pages}}

    def apollo_match(self, body: dict) -> dict:
        matches = []
        for detail in (body.get("details") or [])[:10]:
            person = self.by_id.get(str(detail.get("id")))
            with self._lock:
                self.revealed_ids.append(str(detail.get("id")))
            if person is None:
                continue
            private = person["_private"]
            match = {k: v for k, v in person.items() if k != "_private"}
            match.update(city=private["city"], country=private["country"], time_zone=private["time_zone"],
                         linkedin_url=private["linkedin_url"], email=private["email"] or None,
                         email_status="verified" if private["email"] else "unavailable")
            matches.append(match)
        return {"status": "success", "matches": matches, "credits_consumed": len(matches)}

    # --- Dropcontact ----------------------------------------------------------------------------

    def dropcontact_submit(self, body: dict) -> dict:
        with self._lock:
            request_id = f"fake-{len(self.requests) + 1}-{secrets.token_hex(4)}"
            self.requests[request_id] = {"data": list(body.get("data") or [])[:250], "polls": 0}
        return {"request_id": request_id, "success": True, "error": False, "credits_left": 1000}

    def dropcontact_result(self, request_id: str) -> tuple[int, dict]:
        with self._lock:
            request = self.requests.get(request_id)
            if request is None:
                return 404, {"success": False, "error": True, "reason": "Request not found"}
            request["polls"] += 1
            if request["polls"] <= NOT_READY_POLLS:
                return 200, {"success": False, "reason": "Request not ready yet, try again in 30 seconds"}
        data = []
        for contact in request["data"]:
            email = str(contact.get("email") or "")
            number = int(re.sub(r"\D", "", email.partition("@")[0]) or 0)
            data.append({
                **contact,
                "email": [{"email": email, "qualification": "invalid" if number % 9 == 8 else "nominative@pro"}],
                "job": contact.get("job") or "Marketing Director", "nb_employees": "51-200",
                "naf5_des": "Programmation informatique", "website": contact.get("website") or "",
                "linkedin": contact.get("linkedin") or "",
            })
        return 200, {"success": True, "data": data, "credits_left": 1000}

    # --- the server -----------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers, body: dict) -> tuple[int, dict]:
        with self._lock:
            self.calls[f"{method} {path}"] = self.calls.get(f"{method} {path}", 0) + 1
        if path.startswith("/api/v1/"):
            if not headers.get("x-api-key"):
                return 401, {"error": "Invalid access credentials."}
            if method == "POST" and path == "/api/v1/mixed_people/api_search":
                return 200, self.apollo_search(body)
            if method == "POST" and path == "/api/v1/people/bulk_match":
                return 200, self.apollo_match(body)
        elif path.startswith("/v1/enrich/all"):
            if not headers.get("X-Access-Token"):
                return 401, {"error": True, "reason": "Invalid token"}
            if method == "POST" and path == "/v1/enrich/all":
                return 200, self.dropcontact_submit(body)
            if method == "GET":
                return self.dropcontact_result(path.rsplit("/", 1)[-1])
        return 404, {"error": "not found"}

    def start(self, port: int = 0) -> str:
        """Serve in a background thread; the base URL for APOLLO_BASE_URL and DROPCONTACT_BASE_URL."""

        def answer(method, path, headers, raw):
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            status, data = self.answer(method, urlsplit(path).path, headers, body if isinstance(body, dict) else {})
            return status, data, {}

        self._httpd = json_server(answer, port)
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
