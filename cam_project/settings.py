"""CAM settings: everything an operator changes comes from the environment (README, "Configuration")."""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CAM_VAR_DIR", BASE_DIR / "var"))


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


def envbool(name: str, default: bool = False) -> bool:
    value = env(name)
    if not value:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def envint(name: str, default: int) -> int:
    value = env(name)
    try:
        return int(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


DEBUG = envbool("DEBUG", False)


def _local_secret(name: str, make) -> str:
    """A secret made once for this installation and kept in var/<name> (readable by its owner
    only). Processes starting together agree on it: one creates the file, the others read what
    it wrote."""
    import time

    path = VAR_DIR / name
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(100):  # the creator may not have written it yet
            if value := path.read_text().strip():
                return value
            time.sleep(0.05)
        raise ImproperlyConfigured(f"{path} is empty: delete it, or set the variable it stands for") from None
    value = make()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


# Without SECRET_KEY, a random key made once for this installation.
SECRET_KEY = env("SECRET_KEY") or _local_secret("secret_key", lambda: secrets.token_urlsafe(50))


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


# Mailbox passwords and API keys are encrypted at rest (django-encrypted-model-fields, Fernet).
# CAM_ENCRYPTION_KEY: one key, or several separated by commas to rotate (the first encrypts, all
# decrypt); README "Mailboxes" says how to make one and what losing it means.
CAM_ENCRYPTION_KEY = env("CAM_ENCRYPTION_KEY") or _local_secret("encryption_key", _fernet_key)
FIELD_ENCRYPTION_KEY = [key.strip() for key in CAM_ENCRYPTION_KEY.split(",") if key.strip()]


def _check_fernet_keys(keys: list[str]) -> None:
    from cryptography.fernet import Fernet

    for number, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"CAM_ENCRYPTION_KEY: key {number} is not a Fernet key (32 url-safe base64-encoded bytes); make one "
                "with: python -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\""
            ) from None


_check_fernet_keys(FIELD_ENCRYPTION_KEY)
ALLOWED_HOSTS = [h.strip() for h in env("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]
# The https:// origins the console is served from when that is not the Host header itself
# (Django checks the Origin of every unsafe request against it).
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

# Deployment behind HTTPS (README, "Deploying"). CAM_HTTPS=true turns on everything
# `manage.py check --deploy` asks for; each setting can still be set on its own.
CAM_HTTPS = envbool("CAM_HTTPS", False)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", CAM_HTTPS)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", CAM_HTTPS)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", CAM_HTTPS)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31_536_000 if CAM_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", CAM_HTTPS)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", CAM_HTTPS)
# Behind a reverse proxy that terminates TLS: trust its X-Forwarded-Proto, and count failed
# logins by the client address it appends to X-Forwarded-For (cam_project.auth.client_ip). Only
# behind a proxy that sets both headers itself: a client reaching Django directly could forge them.
CAM_BEHIND_PROXY = envbool("CAM_BEHIND_PROXY", False)
if CAM_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "django_q",
    "encrypted_model_fields",
    "anymail",
    "campaigns",
    "leads",
    "outreach",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a locked-out login into its page (cam_project.auth).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "cam_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "cam_project.context.console",
            ],
        },
    },
]

WSGI_APPLICATION = "cam_project.wsgi.application"

# Database: DATABASE_URL (PostgreSQL through psycopg 3), or the embedded SQLite file under var/.
CAM_EMBEDDED_DB = not env("DATABASE_URL")
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'cam.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite has no row locks: IMMEDIATE transactions take the write lock when they begin, so
    # two cycles claiming sends serialise instead of both reading the same quota (SPEC §4).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not the in-memory default: the concurrency tests run cycles in other processes.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-cam.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# API (README, "HTTP API"): token or session authentication on every endpoint, Django model
# permissions for reads and writes, JSON only, OpenAPI 3 by drf-spectacular.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous request gets 401 with WWW-Authenticate, not 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["cam_project.api.ModelPermissions"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["cam_project.api.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "cam_project.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CAM — Client Acquisition Machine API",
    "DESCRIPTION": "Campaigns, leads, outreach attempts and the suppression list. Every endpoint needs "
    "`Authorization: Token <key>` (manage.py drf_create_token USER) or a session.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["cam_project.api.CanViewCampaigns"],
    "SWAGGER_UI_DIST": "SIDECAR",  # served from static files: the machine may be offline
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "cam_project.api.add_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "LeadStatusEnum": "leads.models.Lead.Status",
        "AttemptStatusEnum": "outreach.models.OutreachAttempt.Status",
        "SuppressionReasonEnum": "outreach.models.Suppression.Reason",
        "ImportStatusEnum": "leads.models.ImportJob.Status",
        "MailboxSecurityEnum": "outreach.models.Mailbox.Security",
        "InboundKindEnum": "outreach.models.InboundMessage.Kind",
        "InboundOutcomeEnum": "outreach.models.InboundMessage.Outcome",
    },
}

# Logins (README, "Configuration"): django-axes counts failures per username and address and
# refuses that pair for CAM_LOGIN_LOCKOUT_MINUTES after CAM_LOGIN_FAILURE_LIMIT failures, on the
# console's and the admin's login alike. Staff see and delete attempts in the admin ("Axes").
AUTHENTICATION_BACKENDS = [
    "cam_project.auth.LoginAttemptsBackend",  # first: a locked-out pair never reaches the password check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("CAM_LOGIN_FAILURE_LIMIT", 5)
# 0: locked out until staff unlock the pair (django-axes reads no cool-off as no expiry).
AXES_COOLOFF_TIME = timedelta(minutes=envint("CAM_LOGIN_LOCKOUT_MINUTES", 15)) or None
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # a typo now and then never adds up to a lockout
AXES_LOCKOUT_CALLABLE = "cam_project.auth.lockout_response"
AXES_CLIENT_IP_CALLABLE = "cam_project.auth.client_ip"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# The daily quota counts per calendar day in this zone.
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
STATIC_ROOT = VAR_DIR / "static"
# WhiteNoise serves the admin's and the API docs' static files, also with DEBUG off; it finds
# them in the apps directly, so `collectstatic` is optional (it adds compression and caching).
WHITENOISE_USE_FINDERS = True

# Email: SMTP when EMAIL_HOST is set; otherwise each mail is written to a file under var/mail.
EMAIL_HOST = env("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = envint("EMAIL_PORT", 25)
    EMAIL_HOST_USER = env("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
    EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 30)
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = VAR_DIR / "mail"
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "CAM <cam@localhost>")

# CAM engine.
APOLLO_API_KEY = env("APOLLO_API_KEY")
APOLLO_BASE_URL = env("APOLLO_BASE_URL", "https://api.apollo.io").rstrip("/")
DROPCONTACT_API_KEY = env("DROPCONTACT_API_KEY")
DROPCONTACT_BASE_URL = env("DROPCONTACT_BASE_URL", "https://api.dropcontact.com").rstrip("/")
# Seconds to connect to, then to wait for each read from, Apollo or Dropcontact.
CAM_PROVIDER_TIMEOUT = float(env("CAM_PROVIDER_TIMEOUT", "20"))
# Dropcontact answers within a minute or so: a cycle that submitted leads asks for their results
# every CAM_DROPCONTACT_POLL_SECONDS for up to CAM_DROPCONTACT_WAIT_SECONDS (within the cycle's
# budget); what is not ready then is asked for by the next cycle. A request still not ready after
# CAM_DROPCONTACT_GIVE_UP_HOURS is given up, and its leads are enriched without Dropcontact.
CAM_DROPCONTACT_POLL_SECONDS = float(env("CAM_DROPCONTACT_POLL_SECONDS", "10"))
CAM_DROPCONTACT_WAIT_SECONDS = float(env("CAM_DROPCONTACT_WAIT_SECONDS", "60"))
CAM_DROPCONTACT_GIVE_UP_HOURS = float(env("CAM_DROPCONTACT_GIVE_UP_HOURS", "24"))
MAKE_WEBHOOK_URL = env("MAKE_WEBHOOK_URL")
CAM_WEBHOOK_TIMEOUT = float(env("CAM_WEBHOOK_TIMEOUT", "5"))
CAM_SITE_URL = env("CAM_SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# DNS look-ups of each address's domain during verification; off by default (offline machines).
CAM_VERIFY_EMAIL_DNS = envbool("CAM_VERIFY_EMAIL_DNS", False)
CAM_MAX_NEW_LEADS = envint("CAM_MAX_NEW_LEADS", 100)
CAM_MAX_ENRICHED = envint("CAM_MAX_ENRICHED", 100)
# A cycle's overall time budget: what it did not reach waits for the next one. Keep it below
# the interval between scheduled cycles.
CAM_CYCLE_BUDGET_SECONDS = envint("CAM_CYCLE_BUDGET_SECONDS", 600)
# The most one send may take, from MAIL FROM to the server's last reply, whatever the server
# does (a server trickling its answer a byte at a time is cut off here).
CAM_SEND_TIMEOUT_SECONDS = envint("CAM_SEND_TIMEOUT_SECONDS", 60)
# One cycle per campaign at a time (SPEC §7): a cycle holds its campaign's lease for this long and
# renews it before each phase; a crashed holder's lease is taken over once it expires. Longer
# than the budget plus a send's limit, so a live cycle never outlives the lease it renewed.
CAM_CYCLE_LEASE_SECONDS = envint(
    "CAM_CYCLE_LEASE_SECONDS", CAM_CYCLE_BUDGET_SECONDS + 2 * CAM_SEND_TIMEOUT_SECONDS + 60
)
# The sender's postal address for campaigns without their own: a campaign goes live only with one.
CAM_POSTAL_ADDRESS = env("CAM_POSTAL_ADDRESS")
# Bounce protection (SPEC §8): a campaign pauses itself when more than this share of its last
# CAM_BOUNCE_WINDOW sends bounced hard (counted over the whole window: 3 of the last 50 at 5 %).
CAM_BOUNCE_PAUSE_RATE = float(env("CAM_BOUNCE_PAUSE_RATE", "0.05"))
CAM_BOUNCE_WINDOW = envint("CAM_BOUNCE_WINDOW", 50)
# The send task: every CAM_SEND_MINUTES, live campaigns send what their mailboxes' caps, gaps and
# windows allow by then, so a day's mail is spread over the window.
CAM_SEND_MINUTES = envint("CAM_SEND_MINUTES", 1)
# Inbound mail (SPEC §9): every CAM_INBOX_MINUTES the mailboxes with IMAP settings are read
# (replies, out-of-office, bounces, unsubscribe requests) and interrupted sends looked up in Sent.
CAM_INBOX_MINUTES = envint("CAM_INBOX_MINUTES", 5)
# An out-of-office reply holds the lead's next email back this many days.
CAM_OOO_DELAY_DAYS = envint("CAM_OOO_DELAY_DAYS", 7)
# ESP webhooks (anymail's tracking and inbound): the "user:password" the ESP must send with them
# (HTTP basic auth). Without it the webhook URLs refuse every call.
CAM_WEBHOOK_SECRET = env("CAM_WEBHOOK_SECRET")
ANYMAIL = {"WEBHOOK_SECRET": CAM_WEBHOOK_SECRET or None}
# ESPs that sign their webhook calls: their signing keys, from the environment of the same name.
for _name in ("MAILGUN_WEBHOOK_SIGNING_KEY", "MAILERSEND_SIGNING_SECRET", "MAILERSEND_INBOUND_SECRET",
              "RESEND_SIGNING_SECRET", "RESEND_INBOUND_SECRET"):
    if env(_name):
        ANYMAIL[_name] = env(_name)
# The scheduler (SPEC §7): every active campaign's cycle every CAM_CYCLE_MINUTES.
CAM_CYCLE_MINUTES = envint("CAM_CYCLE_MINUTES", 15)
# Finished runs older than this are deleted once a day (the "cam: prune run history" schedule).
CAM_RUN_HISTORY_DAYS = envint("CAM_RUN_HISTORY_DAYS", 90)
# Lead files: a CSV lead source reads only files under this directory (uploads are saved there,
# under the campaign's id); a relative path is relative to the project directory.
CAM_IMPORT_DIR = BASE_DIR / env("CAM_IMPORT_DIR", str(VAR_DIR / "imports"))
# Uploads (API, console, admin) bigger than this are refused (413) without being kept.
CAM_MAX_UPLOAD_MB = envint("CAM_MAX_UPLOAD_MB", 50)
# CSV uploads (API, console) bigger than this are imported in the background by a qcluster
# worker (leads.tasks.import_job_run); smaller ones in the request, as before.
CAM_IMPORT_SYNC_MAX_KB = envint("CAM_IMPORT_SYNC_MAX_KB", 256)
FILE_UPLOAD_HANDLERS = [
    "cam_project.uploads.CappedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# django-q2 runs the schedules and background work (`python manage.py qcluster`, README
# "Operations"). Its ORM broker keeps the queue in CAM's own database and delivers a task at
# least once: a task not acknowledged within `retry` seconds (its worker was killed, its
# machine lost) runs again. With REDIS_URL, Redis: a task lost with its worker waits for the
# next schedule. What keeps a cycle single and a send at most once is the campaign's lease and
# the claim in the database, never the queue.
CAM_TASK_TIMEOUT_SECONDS = envint("CAM_TASK_TIMEOUT_SECONDS", CAM_CYCLE_LEASE_SECONDS + 60)
Q_CLUSTER = {
    "name": "cam",
    # Two workers per machine by default: cycles spend their time waiting on SMTP and HTTP.
    "workers": envint("CAM_WORKERS", 2),
    # A worker running longer than this is killed. Above the lease, so a cycle is never killed
    # while it may still be sending: its own budget ends it first.
    "timeout": CAM_TASK_TIMEOUT_SECONDS,
    # Redelivery of an unacknowledged task. Its clock starts when the cluster takes the task off
    # the queue, and a task may then wait in the cluster for a busy worker (at most
    # `queue_limit` wait, so at most one task's `timeout`) before running up to `timeout`: so
    # twice the timeout plus a margin, or a slow task still queued or running would be handed
    # out again. Were it handed out again, the lease refuses the extra cycle all the same.
    "retry": envint("CAM_TASK_RETRY_SECONDS", 2 * CAM_TASK_TIMEOUT_SECONDS + 60),
    # Tasks a cluster takes ahead of its workers: one each. More would wait longer than above.
    "queue_limit": envint("CAM_WORKERS", 2),
    # A task that raised is tried at most this many times; ours catch their own errors, so this
    # bounds only crashes (a killed worker is redelivered, not counted as a failure).
    "max_attempts": 3,
    # A schedule missed while no cluster ran fires once, not once per missed interval: a
    # machine back after a night off must not start a burst of cycles.
    "catch_up": False,
    # Workers are replaced after this many tasks or past this resident size (KB): long-running
    # processes holding a cycle's leftovers never grow without bound.
    "recycle": 50,
    "max_rss": envint("CAM_WORKER_MAX_RSS_MB", 300) * 1024,
    # Keep the last successful tasks for the admin and cam_status; failures are all kept.
    "save_limit": 200,
    # How often the sentinel checks its workers (and every 60 checks runs the scheduler).
    "guard_cycle": float(env("CAM_Q_GUARD_CYCLE", "0.5")),
    "poll": float(env("CAM_Q_POLL", "0.5")),
    "label": "Scheduler",
    "time_zone": TIME_ZONE,
}
REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
# The clusters' heartbeats (cam_status, the admin's "Scheduler" pages) go to a cache every
# process shares: a table in the database (made by a migration), or Redis.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "cluster-stats": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cam_cluster_stats"},
}
Q_CLUSTER["cache"] = "cluster-stats"

CAM_LOG_LEVEL = env("CAM_LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        app: {"handlers": ["console"], "level": CAM_LOG_LEVEL, "propagate": False}
        for app in ("campaigns", "leads", "outreach", "django-q")
    }
    # Server errors with their tracebacks.
    | {"django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False}}
    # Failed logins and lockouts.
    | {"axes": {"handlers": ["console"], "level": "WARNING", "propagate": False}},
}

STATIC_ROOT.mkdir(parents=True, exist_ok=True)
