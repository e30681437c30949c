"""Key Portal settings: everything comes from the environment, with safe defaults.

Development: `DEBUG=1` (set by `make run`) allows a generated SECRET_KEY and
audit signing key. Production: set
SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL, CACHE_URL and, behind a proxy,
KEYS_TRUSTED_PROXIES + KEYS_PROXY_HEADER, AUDIT_SIGNING_KEY_FILE. See docs/deploy.md.
"""

import os
import tempfile
from pathlib import Path

import dj_database_url

from portal.env import (
    audit_signing_key,
    caches_from_url,
    env,
    env_bool,
    env_choices,
    env_int,
    env_list,
    env_map,
    env_positive_int,
    env_words,
    form_action_sources,
    oidc_providers,
    optional_secret,
    secret_key,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
# Required unless debugging; then a random key kept in an untracked file.
SECRET_KEY = secret_key(debug=DEBUG, dev_key_file=BASE_DIR / ".dev-secret-key")

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
    "django.contrib.humanize",  # allauth's passkey list says when each was used
    "django.forms",
    "django_htmx",
    # Accounts (docs/design.md §10): log-in, log-out and the second factor; no sign-up. Single
    # sign-on through OpenID Connect (portal/sso.py).
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "portal",
    "keys",
]

MIDDLEWARE = [
    # The gateway check, answered before anything a page needs (keys/api/gateway.py).
    "keys.api.gateway.GatewayMiddleware",
    # Outermost, so their headers (nosniff, anti-framing, CSP) reach every response: static
    # files answered by WhiteNoise and /api/ problem documents too.
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # /api/: cookies ignored (before sessions), every error a problem+json document.
    "keys.api.problems.ApiProblemMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # django-allauth's log-in stages (password, then second factor) and its context.
    "allauth.account.middleware.AccountMiddleware",
    # A successful log-in on any path leaves its signed device cookie (portal/devices.py).
    "portal.devices.DeviceCookieMiddleware",
    # Signed-in pages show key metadata: no browser or proxy cache keeps them.
    "portal.middleware.NoStoreWhenSignedInMiddleware",
    "portal.middleware.ActingUserMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Django admin changes: confirm it's you first (keys/lib/reauth.py).
    "portal.middleware.AdminConfirmationMiddleware",
    "portal.middleware.HtmxLoginRedirectMiddleware",
    # A role that needs a second factor reaches only its enrolment until one is added.
    "portal.mfa.SecondFactorRequiredMiddleware",
    # Last, so it sees a view's exception first: database unreachable -> 503, not 500.
    "portal.errors.DatabaseUnavailableMiddleware",
]

# Widget templates (keys/_ip_list.html) live with the other templates.
FORM_RENDERER = "portal.renderers.FormRenderer"

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
                "portal.context_processors.session_idle",
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
        # no failed request; DB_CONN_HEALTH_CHECKS=0 trades that for speed. The API's key
        # read needs no such check: it reconnects and reads again itself (keys.models).
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
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Server-side parameters: needed for the API's prepared key read (KEYS_PREPARED_KEY_READ).
    DATABASES["default"]["OPTIONS"] = {
        "server_side_binding": env_bool("DB_SERVER_SIDE_BINDING", True),
    }
# The API's key read, run on every call, is a prepared statement on PostgreSQL: parsed and
# planned once per connection. Nothing else is prepared (Django's default): a search's best
# plan depends on its pattern. Behind PgBouncer in transaction mode older than 1.21 (or with
# max_prepared_statements = 0), set DB_PREPARED_STATEMENTS=0.
KEYS_PREPARED_KEY_READ = env_bool("DB_PREPARED_STATEMENTS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "portal.User"
AUTHENTICATION_BACKENDS = [
    "portal.backends.ThrottledModelBackend",
    "portal.backends.EveryActiveUserIsStaff",
]


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
# Confirm it's you (docs/design.md §10, keys/lib/reauth.py): creating, regenerating, renewing
# or revoking a key, letting one rotate itself, Users actions and every Django admin change ask
# the person to prove who they are again once this many seconds passed since they last did
# (log-in or a confirmation). Positive: at 0 the confirmation itself would be stale at once.
REAUTH_SECONDS = env_positive_int("REAUTH_SECONDS", 15 * 60)
REAUTH_URL = "confirm_identity"
# django-allauth's own pages that ask to confirm (second-factor management) keep the same window.
ACCOUNT_REAUTHENTICATION_TIMEOUT = REAUTH_SECONDS
LOGIN_REDIRECT_URL = "keys:list"
LOGOUT_REDIRECT_URL = "login"

# django-allauth (docs/design.md §10): people log in with their user name and password at
# /login/ (portal/login.py); accounts come from admins (adduser, Users, the Django admin), never
# from sign-up (portal/accounts.py closes it).
ACCOUNT_ADAPTER = "portal.accounts.PortalAccountAdapter"
ACCOUNT_FORMS = {"login": "portal.login.PortalLoginForm"}
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "password1*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
# One log-in throttle, keys.lib.throttle behind portal.backends.ThrottledModelBackend, decides
# on every path; allauth's own counters would lock people out on other terms and other words.
ACCOUNT_RATE_LIMITS = False
# The idle time-out below holds for everyone: no "Remember me" box.
ACCOUNT_SESSION_REMEMBER = True

# Second factor (docs/design.md §10, portal/mfa.py): TOTP apps, passkeys and recovery codes,
# managed from the profile's "Sign-in security". A passkey is a second factor, not a way in
# on its own: every log-in starts with the password and its throttle.
MFA_SUPPORTED_TYPES = ["totp", "webauthn", "recovery_codes"]
MFA_PASSKEY_LOGIN_ENABLED = False
MFA_TOTP_ISSUER = "Key Portal"
MFA_RECOVERY_CODES_SHOW_ONCE = True
# E-mail addresses are not how anyone logs in here, so none needs verifying first.
MFA_ALLOW_UNVERIFIED_EMAIL = True
# Codes count in the one log-in throttle (portal/mfa.py), not in allauth's own counters.
MFA_RATE_LIMITS = False
MFA_FORMS = {
    "authenticate": "portal.mfa.AuthenticateForm",
    "reauthenticate": "portal.mfa.ReauthenticateForm",
}
# Roles that must have a second factor: until they add one, such people reach only the pages
# that add one, and log-out. Unset: admin,auditor; set but empty: none.
MFA_REQUIRED_ROLES = env_choices(
    "MFA_REQUIRED_ROLES", "admin,auditor", ("admin", "auditor", "staff")
)

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
# Passkeys: browsers allow WebAuthn on http://localhost, which fido2 refuses unless told.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = not HTTPS
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
        "form-action": form_action_sources(env("OIDC_ISSUER", "")),
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

# At least one allowed IP entry per key (docs/design.md §1).
KEYS_REQUIRE_ALLOWED_IPS = env_bool("KEYS_REQUIRE_ALLOWED_IPS", True)
# The widest range an allowed IP entry may be (docs/design.md §3): an allowlist restricts.
KEYS_MIN_PREFIX_V4 = env_int("KEYS_MIN_PREFIX_V4", 16)
KEYS_MIN_PREFIX_V6 = env_int("KEYS_MIN_PREFIX_V6", 48)

# Client IP (docs/design.md §4). Direct mode (no KEYS_TRUSTED_PROXIES): only REMOTE_ADDR counts.
# Proxy mode: KEYS_PROXY_HEADER (as in request.META, e.g. HTTP_X_FORWARDED_FOR) is honoured
# only when REMOTE_ADDR is one of KEYS_TRUSTED_PROXIES.
KEYS_TRUSTED_PROXIES = env_list("KEYS_TRUSTED_PROXIES")
KEYS_PROXY_HEADER = env("KEYS_PROXY_HEADER", "HTTP_X_FORWARDED_FOR")
# The django-ipware major version keys/lib/client_ip.py was written and tested against: another
# major version may read headers differently, so a system check stops start-up until someone
# re-checks (portal/checks.py, which also checks the two settings above).
IPWARE_TESTED_MAJOR = 8
# How long a gateway may reuse a yes of /gateway/verify (docs/design.md §9): 0, the default,
# sends no-store, so a revocation counts on the next request; N > 0 is then the revocation delay.
KEYS_GATEWAY_CACHE_SECONDS = env_int("KEYS_GATEWAY_CACHE_SECONDS", 0)

# Throttling of failed API attempts (docs/design.md §4, keys/lib/throttle.py): per client
# network (IPv4 address or IPv6 /64) and per identifier.
KEYS_THROTTLE_WINDOW_SECONDS = env_int("KEYS_THROTTLE_WINDOW_SECONDS", 300)
KEYS_THROTTLE_MAX_FAILURES_PER_IP = env_int("KEYS_THROTTLE_MAX_FAILURES_PER_IP", 50)
KEYS_THROTTLE_MAX_FAILURES_PER_KEY = env_int("KEYS_THROTTLE_MAX_FAILURES_PER_KEY", 20)
# Argon2 verifications running at once in one process; more wait, then get 503.
KEYS_MAX_CONCURRENT_VERIFICATIONS = env_int("KEYS_MAX_CONCURRENT_VERIFICATIONS", 4)
# How long "this password verified for this key at revision R" stays in the cache.
KEYS_VERIFICATION_CACHE_SECONDS = env_int("KEYS_VERIFICATION_CACHE_SECONDS", 300)

# Key use is counted in each process and stored by a background thread this often (keys.api.usage).
KEYS_USAGE_FLUSH_SECONDS = env_int("KEYS_USAGE_FLUSH_SECONDS", 1)
KEYS_USAGE_FLUSH_THREAD = env_bool("KEYS_USAGE_FLUSH_THREAD", True)
# Each process counts into a small memory-mapped file here, which a sibling or the next worker
# stores if the process is killed (keys/lib/journal.py). Local to the host, this user's alone;
# empty: counted in memory, and a killed process loses what it counted since its last flush.
KEYS_USAGE_JOURNAL_DIR = env(
    "KEYS_USAGE_JOURNAL_DIR", str(Path(tempfile.gettempdir()) / f"key-portal-usage-{os.getuid()}")
)
# Refusals of a key are recorded at the first and then once per window, with their count.
KEYS_REFUSAL_WINDOW_SECONDS = env_int("KEYS_REFUSAL_WINDOW_SECONDS", 60)


# Audit history signing (docs/deploy.md, "Audit signing key and checkpoints"): an Ed25519
# private key the database never holds, as a PEM file (AUDIT_SIGNING_KEY_FILE) or as text
# (AUDIT_SIGNING_KEY: PEM, or the base64 of the 32-byte seed). keys.audit.signing parses it at
# start-up. Required unless debugging; then a random seed kept in an untracked file.
AUDIT_SIGNING_KEY = audit_signing_key(debug=DEBUG, dev_key_file=BASE_DIR / ".dev-audit-key")
# Signed checkpoints of the chain head go to the log and, one JSON line each, to a file per
# day in this directory (keep it where the database's administrators cannot write).
AUDIT_CHECKPOINT_DIR = env("AUDIT_CHECKPOINT_DIR") or None
# A checkpoint every this many events, and on the first event after this many seconds.
AUDIT_CHECKPOINT_EVERY_EVENTS = env_int("AUDIT_CHECKPOINT_EVERY_EVENTS", 1000)
# "Verify now" on Audit history checks the chain within the request (about 9 s per 100,000
# events): above this many events it leaves the check to the scheduled verify_audit, so that
# no request outlives gunicorn's timeout.
AUDIT_VERIFY_NOW_MAX_EVENTS = env_int("AUDIT_VERIFY_NOW_MAX_EVENTS", 200_000)
AUDIT_CHECKPOINT_EVERY_SECONDS = env_int("AUDIT_CHECKPOINT_EVERY_SECONDS", 60)

# Audit streaming (manage.py stream_audit, docs/deploy.md "Streaming the audit history").
# Each connect, TLS handshake and response waits at most this long, so a hanging receiver
# holds only its own destination's thread, and only this long per try.
AUDIT_STREAM_TIMEOUT_SECONDS = env_int("AUDIT_STREAM_TIMEOUT_SECONDS", 10)
# After a failure a destination waits 1, 2, 4, … seconds, at most this long, before the next try.
AUDIT_STREAM_MAX_BACKOFF_SECONDS = env_int("AUDIT_STREAM_MAX_BACKOFF_SECONDS", 30)
# A CA bundle (PEM file) the webhook and syslog-TLS receivers' certificates are checked
# against, for a private CA; empty: the system's trusted CAs.
AUDIT_STREAM_CA_BUNDLE = env("AUDIT_STREAM_CA_BUNDLE") or None
# Plain http:// webhooks to 127.0.0.1/localhost only (tests; a relay on the same machine).
AUDIT_STREAM_ALLOW_HTTP_LOCALHOST = env_bool("AUDIT_STREAM_ALLOW_HTTP_LOCALHOST", False)

# The portal's public address, for links in mails (expiry reminders link to Renew).
PORTAL_URL = env("PORTAL_URL", "http://127.0.0.1:8000")

KEYS_EXPIRY_REMINDER_DAYS = [int(d) for d in env_list("KEYS_EXPIRY_REMINDER_DAYS", "30,7,1")]

# Leak reports (POST /api/v1/leaks, keys/api/leaks.py): the public keys whose ECDSA signatures are
# accepted, as a JSON file in the form of https://api.github.com/meta/public_keys/secret_scanning
# (save that document here). Unset: every report is refused with 401.
KEYS_LEAK_REPORT_PUBLIC_KEYS_FILE = env("KEYS_LEAK_REPORT_PUBLIC_KEYS_FILE", "")

# SCIM 2.0 provisioning (/scim/v2/, portal/scim/): the bearer token the identity provider
# sends, from SCIM_TOKEN_FILE or SCIM_TOKEN, at least 32 characters. Unset: /scim/ answers 404.
# Wrong tokens count per client network in the API's throttle (KEYS_THROTTLE_*).
SCIM_TOKEN = optional_secret("SCIM_TOKEN", min_length=32)

# Log-in throttling on every log-in path (keys/lib/throttle.py), within the window: MAX_FAILURES
# for one user name from one client network (IPv4 address or IPv6 /64), or from one browser
# that logged in to it before (portal/devices.py), refuse that name there; MAX_FAILURES_PER_NETWORK
# for any names refuse that network. Failures for a name from everywhere never refuse it: past
# ACCOUNT_BUDGET, each network without such a browser gets MAX_FAILURES_PAST_BUDGET for it.
LOGIN_THROTTLE_MAX_FAILURES = env_int("LOGIN_THROTTLE_MAX_FAILURES", 5)
LOGIN_THROTTLE_MAX_FAILURES_PER_NETWORK = env_int("LOGIN_THROTTLE_MAX_FAILURES_PER_NETWORK", 50)
LOGIN_THROTTLE_ACCOUNT_BUDGET = env_int("LOGIN_THROTTLE_ACCOUNT_BUDGET", 20)
LOGIN_THROTTLE_MAX_FAILURES_PAST_BUDGET = env_int("LOGIN_THROTTLE_MAX_FAILURES_PAST_BUDGET", 1)
LOGIN_THROTTLE_WINDOW_SECONDS = env_int("LOGIN_THROTTLE_WINDOW_SECONDS", 15 * 60)

# Single sign-on through OpenID Connect (docs/design.md §10, docs/settings.md): on when
# OIDC_ISSUER is set. The log-in page then shows "Sign in with OIDC_BUTTON_LABEL"; a first
# log-in creates the user; the roles come from the OIDC_ROLE_CLAIM claim through OIDC_ROLE_MAP
# (a value not in the map: staff) and are read again at every log-in (portal/sso.py).
OIDC_ISSUER = env("OIDC_ISSUER", "").rstrip("/")
OIDC_CLIENT_ID = env("OIDC_CLIENT_ID", "")
OIDC_CLIENT_SECRET = env("OIDC_CLIENT_SECRET", "")
OIDC_BUTTON_LABEL = env("OIDC_BUTTON_LABEL", "") or "Single sign-on"
OIDC_SCOPES = env_words("OIDC_SCOPES", "openid profile email")
OIDC_ROLE_CLAIM = env("OIDC_ROLE_CLAIM", "") or "groups"
OIDC_ROLE_MAP = env_map("OIDC_ROLE_MAP")
# Only single sign-on, except for these local accounts (a way in when the provider is down).
SSO_ONLY = env_bool("SSO_ONLY", False)
SSO_BREAK_GLASS_ACCOUNTS = env_list("SSO_BREAK_GLASS_ACCOUNTS")
SOCIALACCOUNT_ADAPTER = "portal.sso.SocialAccountAdapter"
# The provider vouches for the person: no sign-up form, no verification mail, no tokens kept.
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_EMAIL_REQUIRED = False
SOCIALACCOUNT_STORE_TOKENS = False
# The button posts (with its CSRF token): a link or an image elsewhere cannot start a log-in.
SOCIALACCOUNT_LOGIN_ON_GET = False
# Seconds before a provider that does not answer counts as down (allauth's HTTP requests).
SOCIALACCOUNT_REQUESTS_TIMEOUT = 5
SOCIALACCOUNT_PROVIDERS = oidc_providers(
    issuer=OIDC_ISSUER,
    client_id=OIDC_CLIENT_ID,
    secret=OIDC_CLIENT_SECRET,
    label=OIDC_BUTTON_LABEL,
    scopes=OIDC_SCOPES,
)
