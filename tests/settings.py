"""Settings for the test run: production settings with test-only secrets and fast user hashes."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "test-only-not-a-secret-" + "x" * 40)
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("HTTPS", "0")
os.environ.setdefault("LOG_LEVEL", "DEBUG")
# A fixed audit signing key (the base64 of a 32-byte seed), known to everyone: tests only.
os.environ.setdefault("AUDIT_SIGNING_KEY", "dGVzdC1vbmx5LWF1ZGl0LXNpZ25pbmcta2V5LXNlZWQ=")
# Tests that run threads (50 concurrent key creations on the audit chain) need SQLite's real
# file locking: an in-memory database shared between connections answers "table is locked"
# instead of waiting. One file per test process, so parallel runs do not collide.
os.environ.setdefault(
    "SQLITE_TEST_NAME",
    str(Path(tempfile.gettempdir()) / f"keyportal-test-{os.getpid()}.sqlite3"),
)

from portal.settings import *  # noqa: F403

ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1", "[::1]"]
# Only people's portal log-in passwords, never API key passwords (keys.tokens always uses
# real Argon2id): a fast hasher keeps the many test logins quick.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT = Path(tempfile.mkdtemp(prefix="keyportal-static-"))
WHITENOISE_USE_FINDERS = True
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

# In-process tests store key use on the request that counts it (no background thread, whose
# own connection could not see a test's uncommitted data); the server tests use the thread.
KEYS_USAGE_FLUSH_THREAD = False
KEYS_USAGE_FLUSH_SECONDS = 0
# In memory: a test process leaves no journal for the next run to adopt into its own database.
KEYS_USAGE_JOURNAL_DIR = ""
# The "tests" app only overrides `flush`: transactional tests empty the audit table, which the
# database refuses outside the test run (tests/management/commands/flush.py).
INSTALLED_APPS = [*INSTALLED_APPS, "tests", "bench"]  # noqa: F405
MFA_REQUIRED_ROLES = frozenset()  # the personas log in without a factor; tests/test_mfa.py sets it
