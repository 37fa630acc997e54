"""Settings, read from the environment (12-factor).

Every setting that differs between a laptop and production comes from an environment variable;
the defaults are the embedded single-machine setup: SQLite and a Celery broker on the local
filesystem, both under ``var/``.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


def _dotenv_load() -> None:
    """A developer's ``.env`` (``bin/setup`` writes one with DEBUG=1 and a key), so that the README's
    commands work in any terminal. A variable already set in the environment always wins. Not read in CI,
    which sets its own, nor under pytest (``PYTEST_VERSION``, which the tests' subprocesses inherit): a
    developer's .env must not change what the tests see. ``DOTENV_FILE`` names another file ("" for none).
    """
    if env_bool("CI") or "PYTEST_VERSION" in os.environ:
        return
    path = os.environ.get("DOTENV_FILE", str(BASE_DIR / ".env"))
    if path:
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


_dotenv_load()
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG")


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    # A development key, generated once and kept out of the repository (var/ is ignored).
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "axes",
    "annotate",
    "synth",
    "judges",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.csp.PathCSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last: turns a lockout (too many failed logins) into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and trainer share one SQLite file: wait on locks instead of failing, and
    # keep the test database in a file so a worker subprocess can see it.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_PREPARED_STATEMENTS", True):
    # The hot queries (next item, submit) are planned once per connection, not per request:
    # planning cost as much as running them. Turn off behind a pooler that cannot keep them.
    DATABASES["default"]["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": 2}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
# Where trained models and converted checkpoints are written.
MODELS_ROOT = Path(os.environ.get("MODELS_ROOT", VAR_DIR / "models"))

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "annotate:project_list"
LOGOUT_REDIRECT_URL = "login"

# Logins: django-axes counts failures per IP address and per account (username), in the database; past
# AXES_FAILURE_LIMIT either is locked out for AXES_COOLOFF_TIME (the login page, the admin and tokens).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

# Request rates of the API ("N/s|min|hour|day"; empty: no limit), counted in the default cache
# (annotate.throttles): per signed-in user (the annotation hot path included), per anonymous IP address,
# and for getting a token, per IP address and per account.
API_THROTTLE_RATES = {
    "user": os.environ.get("API_RATE_USER", "6000/min") or None,
    "anon": os.environ.get("API_RATE_ANON", "120/min") or None,
    "login_ip": os.environ.get("API_RATE_LOGIN_IP", "30/min") or None,
    "login_account": os.environ.get("API_RATE_LOGIN_ACCOUNT", "10/min") or None,
}
# The cache that counts them: this process's memory by default (each web process counts on its own);
# set CACHE_URL (redis://...) so that every process shares the counts.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if os.environ.get("CACHE_URL"):
    CACHES["default"] = {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                         "LOCATION": os.environ["CACHE_URL"]}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "annotate.api_errors.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # DRF's parsers, reading at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes (a larger body is a 413).
    "DEFAULT_PARSER_CLASSES": [
        "annotate.api_errors.JSONParser",
        "annotate.api_errors.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Every error is JSON with a message, a service's ValidationError a 400 (annotate.api_errors).
    "EXCEPTION_HANDLER": "annotate.api_errors.exception_handler",
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["annotate.throttles.UserThrottle", "annotate.throttles.AnonThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Preference data API",
    "DESCRIPTION": "Projects, items, labels, imports, agreement and leaderboards. Token auth: "
                   "POST /api/token/ with username and password, then send `Authorization: Token <key>`.",
    "VERSION": "1",
    # Served from the package, not a CDN: the platform works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Request bodies apart from responses: a file to upload is binary there, read-only fields are left out.
    "COMPONENT_SPLIT_REQUEST": True,
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "format": "int64", "minimum": 1,
                                        "maximum": 2**63 - 1}},
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "annotate.api_errors.errors_document"],
    "ENUM_NAME_OVERRIDES": {"VerdictEnum": "annotate.labels.Verdict", "StrengthEnum": "annotate.labels.Strength",
                            "StepModeEnum": "annotate.models.Project.StepMode",
                            "MemberRoleEnum": "annotate.models.Membership.Role",
                            "JudgeModeEnum": "judges.models.Judge.Mode",
                            "SnapshotFormatEnum": "training.models.DatasetSnapshot.Format",
                            "SynthesisKindEnum": "synth.models.SynthesisJob.Kind"},
    "SERVE_INCLUDE_SCHEMA": False,  # the schema does not describe itself
    # Bodies are documented as JSON, which says what a form cannot (numbers, null, lists): the API still reads
    # forms, and the import upload documents its multipart/form-data itself.
    "PARSER_WHITELIST": ["rest_framework.parsers.JSONParser"],
}
# A request body Django or the API reads into memory (JSON, forms; not uploaded files) is at most this
# large; a larger one is answered 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # Django's default, 2.5 MiB

# HTTP model endpoints may only reach these hosts (".example.com" allows subdomains).
ENDPOINT_ALLOWED_HOSTS = env_list("ENDPOINT_ALLOWED_HOSTS", "127.0.0.1,localhost")
# Encrypts endpoint API keys at rest; defaults to SECRET_KEY.
ENDPOINT_SECRET = os.environ.get("ENDPOINT_SECRET", "")

# --- Celery ---------------------------------------------------------------------------------
# Default broker: kombu's filesystem transport, which needs no server. Production: Redis.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://localhost/")
BROKER_DIR = Path(os.environ.get("CELERY_BROKER_DIR", VAR_DIR / "broker"))

# --- Imports (annotate.imports) ----------------------------------------------------------------
# The longest text field an import accepts (UTF-8 bytes; a line may hold 16 such fields): longer is
# refused with its line and field, and memory stays bounded whatever the file holds.
IMPORT_MAX_FIELD_BYTES = int(os.environ.get("IMPORT_MAX_FIELD_BYTES", str(1 << 20)))
# The uploaded file of a failed or cancelled import is kept this many days (it can be retried), then
# removed by the workers' periodic check; 0 removes a refused file at once.
IMPORT_KEEP_FAILED_DAYS = float(os.environ.get("IMPORT_KEEP_FAILED_DAYS", "7"))

# --- Jobs (annotate.job_lifecycle) ------------------------------------------------------------
# A running job's worker renews its lease every JOB_HEARTBEAT_SECONDS for JOB_LEASE_SECONDS; every
# worker looks every JOB_REAP_SECONDS for jobs whose lease has passed (their worker stopped) and
# resumes or fails them: a killed worker's job is noticed within lease + check interval.
JOB_LEASE_SECONDS = int(os.environ.get("JOB_LEASE_SECONDS", "60"))
JOB_HEARTBEAT_SECONDS = float(os.environ.get("JOB_HEARTBEAT_SECONDS", "15"))
JOB_REAP_SECONDS = float(os.environ.get("JOB_REAP_SECONDS", "30"))
# Soft time limit of one task of each kind (a judge run's task is one chunk); the hard limit is this
# margin later. Enforced by the prefork pool (the solo pool of the embedded default has none).
JOB_TIME_LIMITS = {"import": 6 * 3600, "synthesis": 6 * 3600, "judge": 2 * 3600, "training": 48 * 3600,
                   "snapshot": 4 * 3600}
JOB_HARD_LIMIT_MARGIN = 600
# Model-collapse guards: a snapshot whose rows hold generated replies past this share, or replies generated
# from generated data past this depth, is exported with a warning (in its preview and its manifest).
SYNTHETIC_WARN_SHARE = float(os.environ.get("SYNTHETIC_WARN_SHARE", "0.5"))
SYNTHETIC_WARN_DEPTH = int(os.environ.get("SYNTHETIC_WARN_DEPTH", "2"))
# A message is handed to another worker when it is not acknowledged within the visibility timeout
# (Redis): longer than the longest hard limit, so a job that runs is never delivered twice for that
# reason (and a second delivery does nothing while the lease lives, in any case). A job whose worker
# died does not wait for it: the lease check queues it again.
CELERY_BROKER_VISIBILITY_TIMEOUT = max(JOB_TIME_LIMITS.values()) + JOB_HARD_LIMIT_MARGIN + 3600
if CELERY_BROKER_URL.startswith("filesystem://"):
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT}
# Progress and results live on job rows, not in a result backend.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "synth.tasks.*": {"queue": "gpu"},
    "judges.tasks.*": {"queue": "gpu"},
    "training.tasks.snapshot_job_run_task": {"queue": "default"},  # an export, not a trainer
    "training.tasks.*": {"queue": "training"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Content-Security-Policy (django-csp) ----------------------------------------------------
# Defence in depth for model text, which is escaped and sanitized already: should anything slip
# through, the browser runs no inline script, no eval (htmx runs with allowEval off and no hx-on
# attributes), applies no inline style, and loads nothing from elsewhere. Every page's scripts and
# styles are static files.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
# Added on these paths only (config.csp). The API docs: drf-spectacular's Swagger UI starts from an
# inline script (it carries the CSRF token, so no hash can name it: it runs under this response's
# nonce, templates/drf_spectacular/swagger_ui.html), and its stylesheet draws icons as data: images.
CONTENT_SECURITY_POLICY_PATHS = {
    "/api/docs/": {"script-src": [NONCE], "img-src": ["data:"]},
}

# --- Security (production) ------------------------------------------------------------------
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
