"""Key Portal settings: everything comes from the environment, with safe defaults.

Development: `DEBUG=1` (set by `make run`) allows a generated SECRET_KEY. Production: set
SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL, CACHE_URL and, behind a proxy,
KEYS_TRUSTED_PROXIES + KEYS_PROXY_HEADER. See docs/deploy.md.
"""

import ipaddress
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off.")
    # Debug only: a random key kept in an untracked file, so sessions survive a reload.
    from django.core.management.utils import get_random_secret_key

    _dev_key_file = BASE_DIR / ".dev-secret-key"
    if not _dev_key_file.exists():
        _dev_key_file.write_text(get_random_secret_key())
        _dev_key_file.chmod(0o600)
    SECRET_KEY = _dev_key_file.read_text().strip()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.forms",
    "django_htmx",
    "portal",
    "keys",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # /api/: cookies ignored (before sessions), every error a problem+json document.
    "keys.problems.ApiProblemMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, so it sees a view's exception first: database unreachable -> 503, not 500.
    "portal.errors.DatabaseUnavailableMiddleware",
]

# Widget templates (keys/_ip_list.html) live with the other templates.
FORM_RENDERER = "django.forms.renderers.TemplatesSetting"

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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

# Database: SQLite file by default; DATABASE_URL=postgres://… for PostgreSQL.
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        # Checked before reuse (one round trip per request), so a restarted database costs
        # no failed request; DB_CONN_HEALTH_CHECKS=0 trades that for speed.
        conn_health_checks=env_bool("DB_CONN_HEALTH_CHECKS", True),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE: a transaction takes the write lock when it begins, so read-then-write
    # sequences (the audit chain head) never interleave and never hit an upgrade deadlock.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": env("SQLITE_TEST_NAME") or None}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "portal.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "portal.backends.EveryActiveUserIsStaff",
]


def caches_from_url(url: str) -> dict:
    """Cache: local memory by default (one process); redis://… for several processes."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        # Short timeouts: with Redis down, a request falls back (API: Argon2 without the
        # verification cache) within a second instead of hanging.
        return {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
                "KEY_PREFIX": "keyportal",
                "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
            }
        }
    if url in {"", "locmem://"}:
        # Room for the throttle counters of a flood from many addresses (Django's default of
        # 300 entries would let a flood evict them); each entry is a few hundred bytes.
        return {
            "default": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "OPTIONS": {"MAX_ENTRIES": 100_000},
            }
        }
    raise ImproperlyConfigured(f"CACHE_URL must be redis://… or locmem://, not {url!r}")


CACHE_URL = env("CACHE_URL", "")
CACHES = caches_from_url(CACHE_URL)

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "keys:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env("TIME_ZONE", "Europe/Amsterdam")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
WHITENOISE_USE_FINDERS = DEBUG  # production serves the collected, hashed files
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "key-portal@localhost")
# SMTP, for EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend (expiry reminders).
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
# Seconds before a silent mail server is given up on (Django's default is to wait forever).
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)

# Security headers. HTTPS-only settings switch on with HTTPS=1 (the production default).
HTTPS = env_bool("HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS and env_bool("SECURE_SSL_REDIRECT", True)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS and env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Probes answer over plain HTTP on the app server's own port (docs/deploy.md).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_SECONDS", 30 * 60)  # idle timeout...
SESSION_SAVE_EVERY_REQUEST = True  # ...renewed on each request
SESSION_COOKIE_SAMESITE = "Lax"

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "{asctime} {levelname} {name} {message}", "style": "{"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
    },
}

# --- Key Portal -----------------------------------------------------------------------------

# At least one allowed IP entry per key (DESIGN §1).
KEYS_REQUIRE_ALLOWED_IPS = env_bool("KEYS_REQUIRE_ALLOWED_IPS", True)

# Client IP (DESIGN §4). Direct mode (no KEYS_TRUSTED_PROXIES): only REMOTE_ADDR counts.
# Proxy mode: KEYS_PROXY_HEADER (as in request.META, e.g. HTTP_X_FORWARDED_FOR) is honoured
# only when REMOTE_ADDR is one of KEYS_TRUSTED_PROXIES.
KEYS_TRUSTED_PROXIES = env_list("KEYS_TRUSTED_PROXIES")
KEYS_PROXY_HEADER = env("KEYS_PROXY_HEADER", "HTTP_X_FORWARDED_FOR")


def _check_proxies(entries: list[str]) -> None:
    # A mistyped entry would silently leave proxy mode off (every caller would then appear
    # as the proxy): refuse to start instead.
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=True)
        except ValueError:
            raise ImproperlyConfigured(
                f"KEYS_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR range "
                "without host bits."
            ) from None


_check_proxies(KEYS_TRUSTED_PROXIES)

# Throttling of failed API attempts (DESIGN §4).
KEYS_THROTTLE_WINDOW_SECONDS = env_int("KEYS_THROTTLE_WINDOW_SECONDS", 300)
KEYS_THROTTLE_MAX_FAILURES_PER_IP = env_int("KEYS_THROTTLE_MAX_FAILURES_PER_IP", 50)
KEYS_THROTTLE_MAX_FAILURES_PER_KEY = env_int("KEYS_THROTTLE_MAX_FAILURES_PER_KEY", 20)
# Argon2 verifications running at once in one process; more wait, then get 503.
KEYS_MAX_CONCURRENT_VERIFICATIONS = env_int("KEYS_MAX_CONCURRENT_VERIFICATIONS", 4)
# How long "this password verified for this key at revision R" stays in the cache.
KEYS_VERIFICATION_CACHE_SECONDS = env_int("KEYS_VERIFICATION_CACHE_SECONDS", 300)

KEYS_EXPIRY_REMINDER_DAYS = [int(d) for d in env_list("KEYS_EXPIRY_REMINDER_DAYS", "30,7,1")]

# Leak reports (POST /api/v1/leaks, keys/leaks.py): the public keys whose ECDSA signatures are
# accepted, as a JSON file in the form of https://api.github.com/meta/public_keys/secret_scanning
# (save that document here). Unset: every report is refused with 401.
KEYS_LEAK_REPORT_PUBLIC_KEYS_FILE = env("KEYS_LEAK_REPORT_PUBLIC_KEYS_FILE", "")

# Portal log-in throttling (portal/login.py): this many failures for one user name from one
# IP lock that pair out for the window.
LOGIN_THROTTLE_MAX_FAILURES = env_int("LOGIN_THROTTLE_MAX_FAILURES", 5)
LOGIN_THROTTLE_WINDOW_SECONDS = env_int("LOGIN_THROTTLE_WINDOW_SECONDS", 15 * 60)
