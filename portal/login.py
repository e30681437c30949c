"""Log-in throttling: after repeated failures for one user name from one IP, refuse for a while.

The counters live in the cache, so with CACHE_URL=redis://… every process on every app
server shares them. Counting per user name *and* IP means a guesser cannot lock a colleague
out from elsewhere, and a locked-out attempt is refused before any password hashing.
If the cache is unreachable, log-in still works (the password is still checked): refusing
every log-in while Redis is down would be worse than going unthrottled for that time.
"""

import hashlib
import logging
import math
import time

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

from keys.client_ip import client_ip
from portal.cache_counters import cache_incr

logger = logging.getLogger(__name__)


class LoginThrottle:
    """Failed log-ins of one (user name, IP) pair in a fixed window, and the lock they set."""

    def __init__(self, username: str, ip: str | None):
        # Hashed: the cache never holds user names (or a password typed into that field).
        digest = hashlib.sha256(f"{username.casefold()}\0{ip or '-'}".encode()).hexdigest()
        self.failures_key = f"login:failures:{digest[:40]}"
        self.lock_key = f"login:locked:{digest[:40]}"
        self.ip = ip

    def locked_minutes(self, now: float | None = None) -> int:
        """Minutes left of a lock-out, rounded up; 0 when log-in may be tried."""
        try:
            until = cache.get(self.lock_key)
        except Exception:
            logger.warning("Log-in throttle unavailable: cache unreachable", exc_info=True)
            return 0
        remaining = (until or 0) - (now or time.time())
        return math.ceil(remaining / 60) if remaining > 0 else 0

    def failed(self, now: float | None = None) -> None:
        window = settings.LOGIN_THROTTLE_WINDOW_SECONDS
        failures = cache_incr(self.failures_key, timeout=window)
        if failures is None:  # cache unreachable, already logged
            return
        try:
            if failures >= settings.LOGIN_THROTTLE_MAX_FAILURES:
                until = (now or time.time()) + window
                if cache.add(self.lock_key, until, timeout=window):
                    logger.warning("Log-in locked for %d s after failures from %s", window, self.ip)
        except Exception:
            logger.warning("Log-in throttle unavailable: cache unreachable", exc_info=True)

    def succeeded(self) -> None:
        try:
            cache.delete(self.failures_key)
        except Exception:
            logger.warning("Log-in throttle unavailable: cache unreachable", exc_info=True)


class ThrottledAuthenticationForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed log-in attempts. Try again in %(minutes)s.",
    }

    @sensitive_variables()
    def clean(self):
        username = self.cleaned_data.get("username")
        if not username:
            return super().clean()
        throttle = LoginThrottle(username, client_ip(self.request) if self.request else None)
        self._refuse_if_locked(throttle)
        try:
            cleaned_data = super().clean()
        except ValidationError as error:
            if error.code == "invalid_login":
                throttle.failed()
                self._refuse_if_locked(throttle)
            raise
        throttle.succeeded()
        return cleaned_data

    def _refuse_if_locked(self, throttle: LoginThrottle) -> None:
        if minutes := throttle.locked_minutes():
            raise ValidationError(
                self.error_messages["throttled"],
                code="throttled",
                params={"minutes": f"{minutes} minute{'s' if minutes != 1 else ''}"},
            )
