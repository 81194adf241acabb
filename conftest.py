"""Shared test fixtures: a real SMTP server (aiosmtpd), a local webhook receiver, a fixed clock."""

import json
import os
import socket
import threading
import time
from datetime import datetime, timezone as dt_timezone
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

# Live sending needs a postal address for the footer (SPEC §8): the installation's, for the tests
# and the commands they run in child processes. Tests of its absence clear it.
TEST_POSTAL_ADDRESS = "CAM Test Ltd, 1 Test Street, 75001 Paris, France"
os.environ.setdefault("CAM_POSTAL_ADDRESS", TEST_POSTAL_ADDRESS)


@pytest.fixture(autouse=True)
def _postal_address(settings):
    settings.CAM_POSTAL_ADDRESS = os.environ["CAM_POSTAL_ADDRESS"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SMTPRecorder:
    """aiosmtpd handler that keeps every accepted message.

    `refuse` maps a recipient to the reply refusing it ("550 …" permanent, "450 …" temporary);
    `disconnect_after_data` takes the message and drops the connection before answering, the
    one case where the sender cannot know whether the mail was delivered.
    """

    def __init__(self):
        self.messages = []
        self.refuse = {}
        self.disconnect_after_data = False
        self.port = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        if self.disconnect_after_data:
            server.transport.close()
        return "250 Message accepted for delivery"

    def recipients(self) -> list[str]:
        return [m["To"] for m in self.messages]


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on a free local port; Django's SMTP backend points at it."""
    recorder = SMTPRecorder()
    recorder.port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=recorder.port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = recorder.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    yield recorder
    controller.stop()


class _PasswordCheck:
    """aiosmtpd authenticator: one user, one password (AUTH PLAIN or LOGIN)."""

    def __init__(self, username: str, password: str):
        self.username, self.password = username.encode(), password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.username, self.password)
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_servers():
    """Real SMTP servers on free local ports, one per mailbox: `start()` gives a new one's
    SMTPRecorder; `start(username=…, password=…)` one that requires that login (no TLS)."""
    controllers = []

    def start(*, username: str | None = None, password: str | None = None) -> SMTPRecorder:
        recorder = SMTPRecorder()
        recorder.port = free_port()
        options = {}
        if password is not None:
            options = {"authenticator": _PasswordCheck(username or "", password), "auth_require_tls": False,
                       "auth_required": True}
        controller = Controller(recorder, hostname="127.0.0.1", port=recorder.port, **options)
        controller.start()
        controllers.append(controller)
        return recorder

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def imap_server():
    """A real IMAP server (Dovecot) on a free local port with one user and an empty INBOX and
    Sent folder: `append(raw, folder)` delivers a message. Its files are outside pytest's
    temporary directories, which the `dovecot` user may not enter."""
    import shutil
    import tempfile

    from outreach.tests.imap_server import start_dovecot, stop_dovecot

    root = Path(tempfile.mkdtemp(prefix="cam-dovecot-"))
    server, process = start_dovecot(root)
    yield server
    stop_dovecot(process)
    shutil.rmtree(root, ignore_errors=True)


class WebhookReceiver:
    def __init__(self):
        self.events = []
        self.delay = 0.0
        self.status = 200
        self.url = ""


@pytest.fixture
def webhook(settings):
    """A local HTTP endpoint standing in for Make.com; `delay` and `status` make it slow or broken."""
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(receiver.delay)
            receiver.events.append(json.loads(body))
            try:
                self.send_response(receiver.status)
                self.end_headers()
            except OSError:  # the client gave up waiting: that is the point of a slow webhook
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    settings.MAKE_WEBHOOK_URL = receiver.url
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def database_url() -> str:
    """DATABASE_URL of the test database, for management commands run in child processes."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def now():
    """A fixed 'now' in the middle of a UTC day (TIME_ZONE is UTC in tests)."""
    return datetime(2026, 3, 10, 10, 0, tzinfo=dt_timezone.utc)


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    settings.TIME_ZONE = "UTC"
    settings.MAKE_WEBHOOK_URL = ""
    settings.APOLLO_API_KEY = ""
    settings.DROPCONTACT_API_KEY = ""
    settings.CAM_VERIFY_EMAIL_DNS = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "CAM Test <cam@agency.example>"
    # Lead sources read only files under CAM_IMPORT_DIR: each test's own directory.
    settings.CAM_IMPORT_DIR = tmp_path


# API clients for the API tests (users from cam_project.testing).
@pytest.fixture
def admin(db):
    from cam_project.testing import superuser

    return superuser()


@pytest.fixture
def api(admin):
    """A superuser's token client."""
    from cam_project.testing import token_client

    return token_client(admin)


@pytest.fixture
def viewer_api(db):
    """A read-only staff user: only the view_* permissions."""
    from cam_project.testing import read_only_staff, token_client

    return token_client(read_only_staff())


@pytest.fixture
def nobody_api(db):
    """An authenticated user without any permission."""
    from cam_project.testing import token_client, user_with_perms

    return token_client(user_with_perms())


class ProviderReplay:
    """A local HTTP server standing in for Apollo or Dropcontact: it replays queued answers per
    (method, path) — status, JSON body (or raw bytes), headers, a delay — and records requests."""

    def __init__(self):
        self.answers: dict[tuple[str, str], list] = {}
        self.requests: list[dict] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def answer(self, method, path, status=200, body=None, headers=None, delay=0.0):
        self.answers.setdefault((method, path), []).append((status, body, headers or {}, delay))

    def serve(self, method, path, headers, raw):
        self.requests.append({"method": method, "path": path, "headers": dict(headers), "body": json.loads(raw or b"null")})
        status, body, headers, delay = self.answers[(method, path)].pop(0)
        time.sleep(delay)
        return status, body, headers


@pytest.fixture
def provider_replay(settings):
    """A ProviderReplay running, with Apollo's and Dropcontact's base URLs, keys and a 1 s time
    limit pointing at it."""
    from leads.fake_providers import json_server

    replay = ProviderReplay()
    httpd = json_server(replay.serve, replay.port)
    settings.APOLLO_API_KEY, settings.APOLLO_BASE_URL = "apollo-secret-key", replay.url
    settings.DROPCONTACT_API_KEY, settings.DROPCONTACT_BASE_URL = "dropcontact-secret", replay.url
    settings.CAM_PROVIDER_TIMEOUT = 1.0
    yield replay
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def fake_providers(settings):
    """leads.fake_providers serving a directory of 240 made-up people, with Apollo's and
    Dropcontact's base URLs and keys pointing at it."""
    from leads.fake_providers import FakeProviders

    fake = FakeProviders()
    url = fake.start()
    settings.APOLLO_API_KEY, settings.APOLLO_BASE_URL = "apollo-secret-key", url
    settings.DROPCONTACT_API_KEY, settings.DROPCONTACT_BASE_URL = "dropcontact-secret", url
    settings.CAM_PROVIDER_TIMEOUT = 5.0
    settings.CAM_DROPCONTACT_POLL_SECONDS = 0.05  # the fake's results are ready at the second ask
    fake.url = url
    yield fake
    fake.stop()


@pytest.fixture
def http_session():
    """A requests session for the provider clients, closed after the test."""
    import requests

    with requests.Session() as session:
        yield session

# --- the browser tests: Debian's chromium driven by Playwright ------------------------------------

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser(monkeypatch):
    import shutil

    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
                  "--no-first-run", "--disable-sync"],
        )
        yield chromium
        chromium.close()


def log_in(page, username: str = "operator", password: str = "s3cret-pass") -> None:
    """Log the browser page in through the console's login form."""
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


@pytest.fixture
def page(browser, live_server):
    """A browser page on the live server, with a superuser "operator" / "s3cret-pass" to log in as."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("operator", "op@agency.example", "s3cret-pass")
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


# --- a stand-in for an ESP's API (Postmark), at the HTTP boundary -----------------------------------


class FakePostmark:
    """Postmark's /email endpoint on 127.0.0.1: records each call; `status`/`answer` make it refuse."""

    def __init__(self):
        self.requests = []
        self.status, self.answer = 200, None
        from leads.fake_providers import json_server

        self.server = json_server(self._answer)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def _answer(self, method, path, headers, body):
        self.requests.append({"path": path, "token": headers.get("X-Postmark-Server-Token"), "json": json.loads(body)})
        if self.answer is not None:
            return self.status, self.answer, {}
        sent = self.requests[-1]["json"]
        return 200, {"To": sent["To"], "SubmittedAt": "2026-03-10T10:00:00Z",
                     "MessageID": f"pm-{len(self.requests)}", "ErrorCode": 0, "Message": "OK"}, {}


@pytest.fixture
def postmark():
    fake = FakePostmark()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
