"""Settings for the bulk restore portal.

Every setting is read from the environment (or a ``.env`` file beside
``manage.py``) with a default that is safe for local use. The production
checks in ``portal/checks.py`` refuse dangerous combinations.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

INSECURE_DEFAULT_SECRET_KEY = "django-insecure-local-only-change-me-in-production"  # noqa: S105

SECRET_KEY: str = env.str("SECRET_KEY", default=INSECURE_DEFAULT_SECRET_KEY)
DEBUG: bool = env.bool("DEBUG", default=False)
ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Keys for encrypting secrets at rest (Multitel passwords, webhook signing
# secrets). A comma-separated list of Fernet keys: the first encrypts, all
# decrypt, so a key can be rotated. Empty means a key derived from SECRET_KEY.
FIELD_ENCRYPTION_KEYS: list[str] = env.list("FIELD_ENCRYPTION_KEYS", default=[])

INSTALLED_APPS = [
    # Django's admin with the staff site (portal.admin_site.StaffAdminSite) as admin.site.
    "portal.apps.StaffAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "portal",
    "accounts",
    "restores",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a login refused by axes into the lockout page (429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
APPEND_SLASH = False

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
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
# The embedded default is SQLite in WAL mode with a busy timeout and
# IMMEDIATE transactions, so that the web app and several worker processes
# can write to it at once. DATABASE_URL switches to PostgreSQL.
DATABASES: dict[str, dict[str, Any]] = {
    "default": env.db_url("DATABASE_URL", default="sqlite:///db.sqlite3"),
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _name = str(_db.get("NAME") or "db.sqlite3")
    if _name != ":memory:" and not Path(_name).is_absolute():
        _db["NAME"] = str(BASE_DIR / _name)
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=30),
            "init_command": ("PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA foreign_keys=ON;"),
        }
    )
    # Tests use a file too: an in-memory database shared between threads
    # reports "table is locked" instead of waiting, unlike a real deployment.
    # One file per test run, so that runs side by side do not share it.
    _db.setdefault("TEST", {}).setdefault("NAME", str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3"))
if _db["ENGINE"] == "django.db.backends.postgresql":
    # A server that goes silent (its host or a link down, rather than a restart that refuses
    # connections) is given up in seconds, not after TCP's retransmissions (some fifteen
    # minutes): a connection attempt after DATABASE_CONNECT_TIMEOUT, a query whose packets go
    # unacknowledged after DATABASE_TCP_USER_TIMEOUT; the API answers 503 and workers wait it out.
    _tcp_user_timeout_ms = int(env.float("DATABASE_TCP_USER_TIMEOUT", default=5.0) * 1000)
    _db.setdefault("OPTIONS", {}).update(
        {
            "connect_timeout": env.int("DATABASE_CONNECT_TIMEOUT", default=5),
            "tcp_user_timeout": _tcp_user_timeout_ms,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 2,
        }
    )
    # And the server gives up on a client that went silent within about 11 s, ending its
    # session: a host cut off in the middle of a transaction would otherwise hold that
    # transaction's row locks (a tenant's slots, say) until the server's TCP noticed, which
    # can take as long as the server's keepalive time (two hours by default). Empty when a
    # connection pooler refuses startup options (set them on the server instead).
    _server_options = env.str(
        "DATABASE_SERVER_OPTIONS",
        default=(
            "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 "
            f"-c tcp_user_timeout={_tcp_user_timeout_ms}"
        ),
    )
    if _server_options:
        _db["OPTIONS"]["options"] = _server_options
# Connections are kept between requests and tasks (checked before reuse): opening one costs a
# request a few milliseconds, and on SQLite it runs the pragmas above each time.
_db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
_db.setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Axes first: it refuses a locked-out login before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Security (production values come from the environment) --------------------
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("TRUST_X_FORWARDED_PROTO", default=False) else None
)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)

# --- Staff logins (/admin/): password guessing and two-factor ---------------------
# django-axes counts failed logins (Django's authenticate(), that is the admin's login form;
# the API's Basic auth never calls it and has its own limiter, AUTH_FAILURE_RATE). Failures
# are counted per username *and* client address together: someone guessing from elsewhere
# cannot lock a staff member out from their own address, and one address guessing one
# account is still stopped after AXES_FAILURE_LIMIT tries. (Per username alone would let
# anyone lock out any account; per address alone would lock out everyone behind one NAT.)
AXES_FAILURE_LIMIT: int = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The project's client-address rule, as the API's limiter uses it
# (accounts.throttling.client_address; anything but an IP address stored as none).
AXES_CLIENT_IP_CALLABLE = "portal.admin_site.axes_client_address"
# Tries made while locked out do not extend the lockout: it ends AXES_COOLOFF_TIME after
# the last counted failure, as the lockout page says.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True  # a successful login forgets that pair's earlier failures
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # every failure, kept after a lockout is lifted
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "otp_token"]  # masked in stored form data
AXES_LOCKOUT_CALLABLE = "portal.admin_site.lockout_response"  # 429, Retry-After, a readable page
AXES_VERBOSE = False  # no banner on every manage.py command; failures are still logged
# Two-factor (django-otp, TOTP): when on, every staff user needs a code from their device to
# log in to the admin. Off by default so that `make run` stays simple; `check --deploy` warns.
ADMIN_REQUIRE_2FA: bool = env.bool("ADMIN_REQUIRE_2FA", default=False)
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Bulk restore portal")

# --- REST framework -----------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ApiCredentialAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.authentication.IsActiveTenant"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "portal.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "portal.api_errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["accounts.throttling.TenantRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Bulk restore portal API",
    "DESCRIPTION": "Restore phone numbers in bulk through Multitel (v3 bulk_restore contract).",
    "VERSION": "3",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
    "ENUM_NAME_OVERRIDES": {
        "NumberStatusEnum": "restores.schema.NUMBER_STATUSES",
        "JobStatusEnum": "restores.schema.JOB_STATUSES",
        "QueuedStatusEnum": "restores.schema.QUEUED_STATUSES",
    },
}
# Largest request body accepted (10,000 numbers of 15 digits fit many times).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2 * 1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = env.int("DATA_UPLOAD_MAX_NUMBER_FIELDS", default=25_000)

# --- The bulk restore contract (docs/api.md#limits) ----------------------
MULTITEL_BASE_URL: str = env.str("MULTITEL_BASE_URL", default="https://api.multitel.net")
MULTITEL_TIMEOUT: float = env.float("MULTITEL_TIMEOUT", default=30.0)
MULTITEL_CONNECT_TIMEOUT: float = env.float("MULTITEL_CONNECT_TIMEOUT", default=5.0)
MULTITEL_MAX_ATTEMPTS: int = env.int("MULTITEL_MAX_ATTEMPTS", default=3)
# Base and cap of the exponential backoff between upstream attempts (seconds).
MULTITEL_BACKOFF_BASE: float = env.float("MULTITEL_BACKOFF_BASE", default=0.5)
MULTITEL_BACKOFF_MAX: float = env.float("MULTITEL_BACKOFF_MAX", default=10.0)
MULTITEL_RETRY_AFTER_MAX: float = env.float("MULTITEL_RETRY_AFTER_MAX", default=60.0)
# The upstream circuit breaker of each tenant's Multitel account (docs/api.md#outages):
# this many retryable failures in a row open it; it is probed again after the cooldown,
# which doubles after each failed probe up to its maximum; only an outage longer than
# UPSTREAM_OUTAGE_MAX (seconds) fails the numbers it holds back.
UPSTREAM_BREAKER_FAILURES: int = env.int("UPSTREAM_BREAKER_FAILURES", default=10)
UPSTREAM_BREAKER_COOLDOWN: float = env.float("UPSTREAM_BREAKER_COOLDOWN", default=1.0)
UPSTREAM_BREAKER_COOLDOWN_MAX: float = env.float("UPSTREAM_BREAKER_COOLDOWN_MAX", default=5.0)
UPSTREAM_OUTAGE_MAX: float = env.float("UPSTREAM_OUTAGE_MAX", default=15 * 60.0)
SYNC_MAX_NUMBERS: int = env.int("SYNC_MAX_NUMBERS", default=10)
SYNC_DEADLINE: float = env.float("SYNC_DEADLINE", default=25.0)
MAX_NUMBERS_PER_JOB: int = env.int("MAX_NUMBERS_PER_JOB", default=10_000)
WEBHOOK_TIMEOUT: float = env.float("WEBHOOK_TIMEOUT", default=10.0)
WEBHOOK_SYNC_TIMEOUT: float = env.float("WEBHOOK_SYNC_TIMEOUT", default=5.0)
WEBHOOK_RETRY_SCHEDULE: str = env.str("WEBHOOK_RETRY_SCHEDULE", default="30s,2m,10m,1h,6h")
WEBHOOK_ALLOW_PRIVATE_TARGETS: bool = env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False)

# --- Workers ------------------------------------------------------------------
# Numbers a worker claims at once (further capped by the tenant's
# max_concurrency), how long a claim is leased, how long one task keeps
# claiming batches before it hands over to a fresh task, and how many tasks a
# new job is fanned out to (so it spreads over several qcluster processes).
RESTORE_BATCH_SIZE: int = env.int("RESTORE_BATCH_SIZE", default=10)
# A live task renews its leases every quarter of this; a lease outlives its holder by at
# most this long, so numbers held by a worker that died are claimed again within it.
RESTORE_LEASE_SECONDS: int = env.int("RESTORE_LEASE_SECONDS", default=20)
RESTORE_TASK_SLICE_SECONDS: float = env.float("RESTORE_TASK_SLICE_SECONDS", default=10.0)
RESTORE_JOB_FANOUT: int = env.int("RESTORE_JOB_FANOUT", default=4)
# An active job nobody has touched for this long is enqueued again by the sweeper.
RESTORE_STALE_SECONDS: float = env.float("RESTORE_STALE_SECONDS", default=30.0)

# Recorded on each number a process claims (default: host and process id).
WORKER_NAME: str = env.str("WORKER_NAME", default="")

REDIS_URL: str | None = env.str("REDIS_URL", default=None)

# The cache holds rate-limit counters, shared by every process: Redis when
# REDIS_URL is set, else a table in the database (created by the migrations).
CACHES: dict[str, Any] = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "portal",
            # A Redis that is gone costs a request half a second at most: rate limits fail open.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "portal_cache"}
    )
}

# --- Rate limits ----------------------------------------------------------------
# Requests per tenant (all its credentials together), failed logins per client
# address, and failed logins per username (from every address together; they
# never refuse a right secret), as "N/s", "N/min", "N/h" or "N/day"; "off"
# disables one.
API_THROTTLE_RATE: str = env.str("API_THROTTLE_RATE", default="600/min")
AUTH_FAILURE_RATE: str = env.str("AUTH_FAILURE_RATE", default="20/min")
AUTH_FAILURE_USERNAME_RATE: str = env.str("AUTH_FAILURE_USERNAME_RATE", default="40/min")
# Reverse proxies (addresses or networks) whose X-Forwarded-For is believed: the
# client's address is the right-most entry that is not one of them. Empty: the
# header is ignored and the client is REMOTE_ADDR (accounts.throttling.client_address).
TRUSTED_PROXIES: list[str] = env.list("TRUSTED_PROXIES", default=[])
# Who may read /metrics: these networks, or a request with "Authorization: Bearer <METRICS_TOKEN>".
METRICS_ALLOWED_IPS: list[str] = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1/32", "::1/128"])
METRICS_TOKEN: str = env.str("METRICS_TOKEN", default="")
# Hours an Idempotency-Key is remembered.
IDEMPOTENCY_KEY_HOURS: int = env.int("IDEMPOTENCY_KEY_HOURS", default=24)
Q_TASK_TIMEOUT = env.int("Q_TASK_TIMEOUT", default=600)
Q_CLUSTER: dict[str, Any] = {
    "name": env.str("Q_CLUSTER_NAME", default="portal"),
    "workers": env.int("Q_WORKERS", default=4),
    # A task that claims batches stops taking new ones after
    # RESTORE_TASK_SLICE_SECONDS; the timeout only catches a stuck worker.
    "timeout": Q_TASK_TIMEOUT,
    # Must be larger than the timeout, or a running task is handed out twice.
    "retry": Q_TASK_TIMEOUT + 60,
    # A task that raised is acknowledged and recorded as failed rather than
    # redelivered forever; the job's rows in the database (not the queue) are
    # the record of work still to do, and the sweeper picks them up again.
    "ack_failures": True,
    "max_attempts": env.int("Q_MAX_ATTEMPTS", default=3),
    "catch_up": False,
    "save_limit": env.int("Q_SAVE_LIMIT", default=500),
    "recycle": 500,
    "poll": env.float("Q_POLL", default=0.2),
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Webhook deliveries have a queue and qcluster processes of their own, so that a tenant's
# slow receivers never hold the workers that restore numbers: `Q_QUEUE=webhooks python
# manage.py qcluster` serves it (a cluster of the same name, so it reads the same
# signed tasks, under another queue name). Every other qcluster serves restores.
WEBHOOK_QUEUE: str = f"{Q_CLUSTER['name']}-webhooks"
Q_QUEUE: str = env.str("Q_QUEUE", default="restores")
if Q_QUEUE not in ("restores", "webhooks"):
    raise ImproperlyConfigured(f"Q_QUEUE must be 'restores' or 'webhooks', not {Q_QUEUE!r}")
if Q_QUEUE == "webhooks":
    Q_CLUSTER["cluster_name"] = WEBHOOK_QUEUE
    Q_CLUSTER["workers"] = env.int("Q_WEBHOOK_WORKERS", default=4)

# --- Logging: JSON lines (LOG_FORMAT=json) or plain text, with the job and tenant
# each line concerns. Credentials are never logged; urllib3's debug logs are off.
LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT: str = env.str("LOG_FORMAT", default="json")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "portal.logs.ContextFilter"}},
    "formatters": {
        "json": {"()": "portal.logs.JsonFormatter"},
        "plain": {
            "()": "portal.logs.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django-q": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "urllib3": {"level": "WARNING"},
        "django.db.backends": {"level": "WARNING"},
    },
}
