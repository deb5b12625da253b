"""aspweb settings: one module, driven by the environment.

With no environment at all this is the embedded default: SQLite under var/, local-memory cache,
Celery tasks run eagerly, e-mail to the console, and the Django secret key and the encryption key
generated once into var/; no debug pages, which list every URL to whoever asks. Every variable read here
is listed in the README's configuration table.
"""

import ipaddress
import json
import os
import re
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (1/0, yes/no, on/off), not {raw!r}.")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}.") from None


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_pairs(name: str) -> list[tuple[str, str]]:
    """`a=X,b=Y` as [("a", "X"), ("b", "Y")]; a name may repeat. Split at each pair's last `=`, so a
    left-hand name may hold one (the right-hand names of aspweb's maps never do)."""
    pairs = []
    for item in env_list(name):
        left, sep, right = item.rpartition("=")
        if not sep or not left.strip() or not right.strip():
            raise ImproperlyConfigured(f"{name} must be a comma-separated list of name=value pairs, not {item!r}.")
        pairs.append((left.strip(), right.strip()))
    return pairs
def _redact_patterns(raw: str) -> list[str]:
    if not raw:
        return []
    try:
        patterns = json.loads(raw)
        if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
            raise ValueError("not a list of non-empty strings")
        for pattern in patterns:
            re.compile(pattern)
    except (ValueError, re.error) as exc:
        raise ImproperlyConfigured("ASPWEB_LOG_BODIES_REDACT_PATTERNS must be a JSON list of regular expressions, "
                                   f'e.g. ["ACME-[0-9]{{6}}"]: {exc}') from None
    return patterns


# Django's debug pages, a developer's switch: they list every URL and much of the settings to whoever asks.
DEBUG = env_bool("DEBUG", False)
# DEBUG=false, as the README's production profile sets it, says this is production: secrets come from the
# environment (several hosts must share them, and a lost var/ would leave the stored provider keys
# unreadable), static files from collectstatic, host names from ALLOWED_HOSTS. Left unset, DEBUG is off and
# this is the embedded default, which generates its secrets into var/ and answers on this machine.
PRODUCTION = "DEBUG" in os.environ and not DEBUG
DATA_DIR = Path(env_str("ASPWEB_DATA_DIR") or BASE_DIR / "var")


def _embedded_secret(filename: str, make: Callable[[], str], env_name: str) -> str:
    """Read a secret generated once into DATA_DIR; production never may."""
    if PRODUCTION:
        raise ImproperlyConfigured(
            f"{env_name} is not set. With DEBUG=false, aspweb needs its secrets from the environment "
            "(see the README's production profile); it never generates them on a production start."
        )
    path = DATA_DIR / filename
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting at once must not write two different secrets.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(make() + "\n")
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY") or _embedded_secret(
    "secret_key", lambda: secrets.token_urlsafe(50), "SECRET_KEY"
)

# Newest key first. Values are Fernet keys; rotation: put a new key first, run
# `manage.py rotate_encryption_key`, then drop the old key.
ENCRYPTION_KEYS_FILE = DATA_DIR / "encryption_keys"
ENCRYPTION_KEYS = env_list("ASPWEB_ENCRYPTION_KEYS") or _embedded_secret(
    "encryption_keys", lambda: Fernet.generate_key().decode(), "ASPWEB_ENCRYPTION_KEYS"
).split()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "axes",
    "accounts",
    "providers",
    "usage",
    "playground",
    "budgets",
    "gateway",
    "reconcile",
    "aspweb",
]

# Request threads pooled between requests, each with its database connection (aspweb/handler.py).
ASPWEB_IDLE_THREADS = env_int("ASPWEB_IDLE_THREADS", 16)

# Django's checks for these three look for Django's dotted paths; aspweb/checks.py checks by class.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]
# The sign-in form shows axes's refusals itself; axes's middleware is left out (accounts/signin.py).
SILENCED_SYSTEM_CHECKS += ["axes.W002"]

# Django's middleware, with hooks that run on the event loop under ASGI (aspweb/middleware.py).
MIDDLEWARE = [
    "aspweb.middleware.SecurityMiddleware",
    "aspweb.middleware.CSPMiddleware",
    "aspweb.middleware.StaticFilesMiddleware",
    "aspweb.middleware.SessionMiddleware",
    "aspweb.middleware.CommonMiddleware",
    "aspweb.middleware.StorableTextMiddleware",
    "aspweb.middleware.CsrfViewMiddleware",
    "aspweb.middleware.AuthenticationMiddleware",
    "aspweb.middleware.MessageMiddleware",
    "aspweb.middleware.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "aspweb.urls"
ASGI_APPLICATION = "aspweb.asgi.application"

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
                "aspweb.roles.roles_context",
                "budgets.context.unread_notifications",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_POOL", True):
        # Under ASGI every request's sync work runs in a thread of its own, so without a pool every
        # request opened a new connection. A connection goes back to the pool when its request ends.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DB_POOL_MIN_SIZE", 2), "max_size": env_int("DB_POOL_MAX_SIZE", 40),
            "timeout": env_int("DB_POOL_TIMEOUT", 30),
        }
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "aspweb.sqlite3",
            # A file, not memory, so the browser tests' server thread sees the test's data; one per
            # process, so test runs side by side do not share it.
            "TEST": {"NAME": DATA_DIR / f"test-{os.getpid()}.sqlite3"},
            # Held open by the threads that serve requests (aspweb/handler.py): opening one per request
            # cost more than most requests' queries.
            "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 600),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA synchronous=NORMAL;",
            },
        }
    }

REDIS_URL = env_str("REDIS_URL")
CACHE_KEY_PREFIX = env_str("ASPWEB_CACHE_PREFIX", "aspweb")
# The shared cache: rate-limit counters, cached answers, circuit breakers, the playground's pending requests.
if REDIS_URL:
    # Django's RedisCache, refusing to run inline on the event loop (aspweb/sharedcache.py).
    CACHES = {
        "default": {
            "BACKEND": "aspweb.sharedcache.SharedRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }
else:
    # Each process's own memory: room enough that culling never reaches a counter in use.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                          "OPTIONS": {"MAX_ENTRIES": 100_000}}}
# Sessions from the database, in a row cache of each worker (accounts/sessions.py), dropped in every process
# when any session changes: in both profiles, a signed-in request's session costs no round trip.
SESSION_ENGINE = "accounts.sessions"

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = env_str("TIME_ZONE", "UTC")
# Run by `celery -A aspweb worker -B` (or a separate `celery -A aspweb beat`). The embedded default has no
# beat: usage records evaluate alerts inline, and a refused reservation first releases expired ones; cron
# `manage.py sweep_budgets` for forecasts and roll-overs on quiet days.
CELERY_BEAT_SCHEDULE = {
    "budgets-sweep": {"task": "budgets.tasks.budgets_sweep", "schedule": env_int("ASPWEB_BUDGET_SWEEP_SECONDS", 60)},
    "usage-journal-replay": {"task": "usage.tasks.journal_replay",
                             "schedule": env_int("ASPWEB_USAGE_JOURNAL_REPLAY_SECONDS", 60)},
    "usage-bodies-expire": {"task": "usage.tasks.call_bodies_expire", "schedule": 3600},
    # Days already settled are not fetched again: hourly runs cost one look at the table once the day is done.
    "reconcile-daily": {"task": "reconcile.tasks.reconcile_daily",
                        "schedule": env_int("ASPWEB_RECONCILE_SECONDS", 3600)},
}

AUTH_USER_MODEL = "accounts.User"
# Django's model backend with signed-in people in a row cache of each worker (accounts/backends.py); Django's own stays
# listed so that sessions it signed keep working. Axes's comes first, so that a throttled account or address is
# refused before any password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "accounts.backends.CachedUserBackend",
                           "django.contrib.auth.backends.ModelBackend",
                           # Sessions signed in before the backend's rename: loaded, never signed in.
                           "accounts.backends.KeptUserBackend"]
# Sign-in throttling (accounts/signin.py): this many failed sign-ins for one account, or from one client
# address, refuse it until the cool-off passes without a try. Counted in the database, in both profiles.
AXES_FAILURE_LIMIT = env_int("ASPWEB_SIGNIN_FAILURE_LIMIT", 10)
_cooloff_minutes = env_int("ASPWEB_SIGNIN_COOLOFF_MINUTES", 15)
if AXES_FAILURE_LIMIT < 1 or _cooloff_minutes < 1:
    raise ImproperlyConfigured("ASPWEB_SIGNIN_FAILURE_LIMIT and ASPWEB_SIGNIN_COOLOFF_MINUTES must be at least 1.")
AXES_COOLOFF_TIME = timedelta(minutes=_cooloff_minutes)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# The e-mail arrives as `username`, the name Django's sign-in form gives it (axes would look for `email`).
AXES_USERNAME_FORM_FIELD = "username"
# Sign-ins are in the audit log; and no banner of axes's own at every start of a process.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
# Single sign-on with OpenID Connect (accounts/sso.py): on when an issuer is set. Groups in the ID token's
# groups claim give roles and teams at every sign-in.
SSO_ISSUER = env_str("ASPWEB_SSO_ISSUER").rstrip("/")
SSO_CLIENT_ID = env_str("ASPWEB_SSO_CLIENT_ID")
SSO_CLIENT_SECRET = env_str("ASPWEB_SSO_CLIENT_SECRET")
SSO_SCOPES = env_str("ASPWEB_SSO_SCOPES", "openid email profile")
# Empty: the provider sends no groups (Google); roles and teams are then kept in aspweb.
SSO_GROUPS_CLAIM = env_str("ASPWEB_SSO_GROUPS_CLAIM", "groups")
SSO_GROUP_ROLES = env_pairs("ASPWEB_SSO_GROUP_ROLES")
SSO_GROUP_TEAMS = env_pairs("ASPWEB_SSO_GROUP_TEAMS")
# Roles everyone who signs in this way gets, whatever their groups (for providers that send none).
SSO_DEFAULT_ROLES = env_list("ASPWEB_SSO_DEFAULT_ROLES")
# If set, only e-mail addresses at these domains may sign in this way (e.g. a Google Workspace's).
SSO_EMAIL_DOMAINS = env_list("ASPWEB_SSO_EMAIL_DOMAINS")
# The button says "Sign in with <this>".
SSO_NAME = env_str("ASPWEB_SSO_NAME", "single sign-on")
# false: only superusers (the break-glass account) sign in with a password; everyone else uses single sign-on.
PASSWORD_SIGNIN = env_bool("ASPWEB_PASSWORD_SIGNIN", True)
if SSO_ISSUER and not (SSO_CLIENT_ID and SSO_CLIENT_SECRET):
    raise ImproperlyConfigured("ASPWEB_SSO_ISSUER is set: ASPWEB_SSO_CLIENT_ID and ASPWEB_SSO_CLIENT_SECRET are "
                               "needed too.")
if SSO_ISSUER and "openid" not in SSO_SCOPES.split():
    raise ImproperlyConfigured(f"ASPWEB_SSO_SCOPES must include openid, not {SSO_SCOPES!r}.")
if not PASSWORD_SIGNIN and not SSO_ISSUER:
    raise ImproperlyConfigured("ASPWEB_PASSWORD_SIGNIN=false needs single sign-on (ASPWEB_SSO_ISSUER) to be set up.")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT") or DATA_DIR / "static")
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Without collectstatic (the embedded default), serve straight from the apps' static folders.
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", not PRODUCTION)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "aspweb@localhost")

# HTTPS deployments: secure cookies, redirects and HSTS together, so `check --deploy` is clean.
HTTPS = env_bool("ASPWEB_HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
# Probes and scrapers ask over plain HTTP inside the deployment (aspweb/ops.py): not redirected.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", HTTPS)
if env_bool("ASPWEB_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts and styles only from aspweb's own static files, so markup
# that slipped past escaping cannot run; htmx's SSE streams are same-origin requests.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "connect-src": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
        "base-uri": [NONE],
        "object-src": [NONE],
    },
}

# LOG_FORMAT=json: one JSON object per line (aspweb/logjson.py), for log shippers; plain text otherwise.
LOG_FORMAT = env_str("LOG_FORMAT", "plain").lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
                   "json": {"()": "aspweb.logjson.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "filters": {"one_line_refusals": {"()": "aspweb.logfilters.OneLineRefusals"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # The SDKs log request options (headers included) at DEBUG: keep them quiet whatever LOG_LEVEL says.
    "loggers": {
        "openai": {"level": "WARNING"},
        "anthropic": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "httpcore2": {"level": "WARNING"},
        # Single sign-on's client logs the PKCE verifier at DEBUG.
        "authlib": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # botocore logs each request's headers at DEBUG, a session token (X-Amz-Security-Token) among them.
        "botocore": {"level": "WARNING"},
        "aiobotocore": {"level": "WARNING"},
        "django.request": {"filters": ["one_line_refusals"]},
    },
}

# GET /metrics (aspweb/ops.py) answers a request bearing this token, or one from an address in the allow-list
# (addresses or networks, as the server sees the client: behind a proxy, the proxy's). Neither set: nobody.
METRICS_TOKEN = env_str("ASPWEB_METRICS_TOKEN")
try:
    METRICS_ALLOW = [ipaddress.ip_network(item, strict=False) for item in env_list("ASPWEB_METRICS_ALLOW")]
except ValueError as exc:
    raise ImproperlyConfigured(f"ASPWEB_METRICS_ALLOW must list addresses or networks: {exc}") from None

# OpenTelemetry (aspweb/otel.py): with an OTLP endpoint, each call is exported as a span (OTLP/HTTP, JSON).
OTEL_TRACES_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
    env_str("OTEL_EXPORTER_OTLP_ENDPOINT").rstrip("/") + "/v1/traces" if env_str("OTEL_EXPORTER_OTLP_ENDPOINT") else "")
OTEL_HEADERS = env_str("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env_str("OTEL_EXPORTER_OTLP_HEADERS")
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME", "aspweb")

# Provider calls; each provider sets its own whole-call timeout and retry count.
PROVIDER_CONNECT_TIMEOUT_SECONDS = env_int("ASPWEB_PROVIDER_CONNECT_TIMEOUT", 10)
PROVIDER_FIRST_TOKEN_TIMEOUT_SECONDS = env_int("ASPWEB_PROVIDER_FIRST_TOKEN_TIMEOUT", 60)
# Retries: capped exponential backoff with jitter (1 s, 2 s, 4 s ... at most 30 s); Retry-After wins.
PROVIDER_RETRY_BASE_SECONDS = 1.0
PROVIDER_RETRY_MAX_SECONDS = 30.0
# Routes: a deployment failing this many times in a row is skipped for the cool-down, then tried again.
CIRCUIT_FAILURE_THRESHOLD = env_int("ASPWEB_CIRCUIT_FAILURES", 5)
CIRCUIT_COOLDOWN_SECONDS = env_int("ASPWEB_CIRCUIT_COOLDOWN", 30)
CLAUDE_CLI_PATH = env_str("ASPWEB_CLAUDE_CLI", "claude")
# Names of further variables the Claude CLI gets from the server's environment, beyond its own few
# (providers/adapters/claude_cli.py): it gets no other.
CLAUDE_CLI_ENV = env_list("ASPWEB_CLAUDE_CLI_ENV")

# The most usage records the call path writes in one transaction (usage.writer): concurrent calls' records
# are written together, up to this many.
USAGE_WRITE_BATCH = env_int("ASPWEB_USAGE_WRITE_BATCH", 500)
# A serving process answers a call once its usage record is in the ledger's journal, and commits it in the
# writer's next batch right after (usage/journal.py): with Redis, a Redis stream, whose entries the beat writes
# when older than the grace period and not written; without, a file per process under DATA_DIR/journal
# (usage/journalfile.py), whose segments a serving process writes as it starts when their process is gone.
# ASPWEB_USAGE_WRITE_BEHIND=false commits every record before its answer.
USAGE_WRITE_BEHIND = env_bool("ASPWEB_USAGE_WRITE_BEHIND", True)
USAGE_JOURNAL = env_str("ASPWEB_USAGE_JOURNAL", "redis" if REDIS_URL else "file")
if USAGE_JOURNAL not in ("redis", "file"):
    raise ImproperlyConfigured("ASPWEB_USAGE_JOURNAL is redis or file.")
if USAGE_JOURNAL == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("ASPWEB_USAGE_JOURNAL=redis needs REDIS_URL.")
USAGE_JOURNAL_GRACE_SECONDS = env_int("ASPWEB_USAGE_JOURNAL_GRACE_SECONDS", 60)

# Prompt and answer logging (usage/bodies.py), off unless turned on: for every gateway and CLI call
# (LOG_BODIES), for the playground's calls (LOG_BODIES_PLAYGROUND), or per API key ("Log prompts and answers").
LOG_BODIES = env_bool("ASPWEB_LOG_BODIES", False)
LOG_BODIES_PLAYGROUND = env_bool("ASPWEB_LOG_BODIES_PLAYGROUND", False)
# Logged bodies are deleted this many days after their call (the beat, hourly).
LOG_BODIES_RETENTION_DAYS = env_int("ASPWEB_LOG_BODIES_RETENTION_DAYS", 30)
# Characters kept of a call's request, and of its answer; the rest is cut and marked.
LOG_BODIES_MAX_CHARS = env_int("ASPWEB_LOG_BODIES_MAX_CHARS", 32_000)
if LOG_BODIES_RETENTION_DAYS < 1 or LOG_BODIES_MAX_CHARS < 100:
    raise ImproperlyConfigured("ASPWEB_LOG_BODIES_RETENTION_DAYS must be at least 1, ASPWEB_LOG_BODIES_MAX_CHARS "
                               "at least 100.")
# Further regular expressions (Python syntax) whose matches are redacted, as a JSON list of strings.
LOG_BODIES_REDACT_PATTERNS = _redact_patterns(env_str("ASPWEB_LOG_BODIES_REDACT_PATTERNS"))

# Budgets. A hard limit reserves a call's worst case: a bound on its input (providers/bounds.py) plus
# max_tokens of output; a request under a hard limit that sets no max_tokens is sent with this many (the
# Anthropic adapter's own default) as its cap.
BUDGET_DEFAULT_MAX_TOKENS = env_int("ASPWEB_BUDGET_DEFAULT_MAX_TOKENS", 4096)
# A reservation whose call never recorded (a crashed worker) is released after this long (at least the
# provider's timeout plus a minute).
BUDGET_RESERVATION_TTL_SECONDS = env_int("ASPWEB_BUDGET_RESERVATION_TTL", 900)
# Where hard limits are held (budgets/redisholds.py): "redis", an atomic check-and-hold in Redis on the event
# loop, the default with REDIS_URL; or "database", by the budget period rows, the embedded default's.
BUDGET_HOLDS = env_str("ASPWEB_BUDGET_HOLDS", "redis" if REDIS_URL else "database")
if BUDGET_HOLDS not in ("redis", "database") or (BUDGET_HOLDS == "redis" and not REDIS_URL):
    raise ImproperlyConfigured(
        f"ASPWEB_BUDGET_HOLDS must be database, or redis with REDIS_URL set; not {BUDGET_HOLDS!r}.")
# After usage, every budget's alerts are evaluated at most once this many seconds per process (a task with
# this countdown; a timer thread without a worker); 0 evaluates as each batch of usage records commits.
BUDGET_EVALUATE_SECONDS = env_int("ASPWEB_BUDGET_EVALUATE_SECONDS", 2)
# Forecast alerts wait until this share of the period has passed: 6 hours of a day, 7.5 days of a month.
BUDGET_FORECAST_MIN_ELAPSED = 0.25
# Alert deliveries (e-mail, webhook): retries after 10 s, 20 s, 40 s ... at most 10 minutes apart.
ALERT_DELIVERY_RETRIES = env_int("ASPWEB_ALERT_RETRIES", 5)
ALERT_RETRY_BASE_SECONDS = env_int("ASPWEB_ALERT_RETRY_BASE", 10)
ALERT_RETRY_MAX_SECONDS = 600
ALERT_WEBHOOK_TIMEOUT_SECONDS = 10

# Reconciliation with the providers' usage and cost reports (reconcile/): a UTC day is compared this many
# hours after it closed (the providers' reports lag), over the last days below, each report request bounded.
RECONCILE_SETTLE_HOURS = env_int("ASPWEB_RECONCILE_SETTLE_HOURS", 2)
RECONCILE_LOOKBACK_DAYS = env_int("ASPWEB_RECONCILE_LOOKBACK_DAYS", 7)
RECONCILE_TIMEOUT_SECONDS = 30
# OpenRouter has no organisation report: each call's generation is looked up, at most this many per provider
# and day (an even sample of the day's calls beyond it), one request at a time.
RECONCILE_OPENROUTER_LOOKUPS = env_int("ASPWEB_RECONCILE_OPENROUTER_LOOKUPS", 200)
# Webhooks go only to public addresses (aspweb/outbound.py); these hosts (`host` or `host:port`, comma
# separated) may be internal too, e.g. a chat server on the LAN.
WEBHOOK_ALLOWED_HOSTS = env_list("ASPWEB_WEBHOOK_ALLOWED_HOSTS")
# Where aspweb is served, for links in e-mails and webhooks (e.g. https://aspweb.example.com); none if unset.
SITE_URL = env_str("ASPWEB_SITE_URL")
