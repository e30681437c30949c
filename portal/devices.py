"""Browsers that logged in before: a signed cookie that gives them their own log-in budget.

A successful log-in leaves the cookie `kp_device` in that browser, naming the account and a
random device id, signed with SECRET_KEY through django.core.signing (so only the portal can
make one) and valid for DEVICE_DAYS, renewed at each log-in. Its next log-in attempt for that
account counts in that device's own throttle bucket (keys/lib/throttle.py), untouched by
failures from the browser's network or from anywhere else: someone guessing alice's password
cannot lock her out of the browser she uses. The cookie is HttpOnly, SameSite=Lax and Secure
over HTTPS; it proves only that this browser once knew the password, and opens nothing.

One cookie per browser: a browser shared by two accounts keeps the budget of the last one
that logged in.
"""

import secrets

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse

COOKIE = "kp_device"
DEVICE_DAYS = 180
_SALT = "portal.devices.login"


def device_of(request: HttpRequest | None, username: str) -> str | None:
    """The id of this browser if it logged in to `username` before, else None."""
    value = request.COOKIES.get(COOKIE) if request is not None else None
    if not value:
        return None
    try:
        device = signing.loads(value, salt=_SALT, max_age=DEVICE_DAYS * 24 * 3600)
    except signing.BadSignature:  # forged, or expired
        return None
    if not isinstance(device, dict) or not isinstance(device.get("account"), str):
        return None
    if device["account"].casefold() != username.casefold():
        return None
    return device.get("device") if isinstance(device.get("device"), str) else None


def remember(request: HttpRequest | None, username: str) -> None:
    """Let this browser keep its own budget for `username` (the cookie goes on the response)."""
    if request is None:
        return
    device = device_of(request, username) or secrets.token_urlsafe(16)
    value = signing.dumps({"account": username, "device": device}, salt=_SALT)
    request._device_cookie = value  # type: ignore[attr-defined]  # DeviceCookieMiddleware sets it


class DeviceCookieMiddleware:
    """Sets the device cookie on the response to a successful log-in (any log-in path)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        value = getattr(request, "_device_cookie", None)
        if value:
            response.set_cookie(
                COOKIE,
                value,
                max_age=DEVICE_DAYS * 24 * 3600,
                httponly=True,
                secure=request.is_secure() or settings.SESSION_COOKIE_SECURE,
                samesite="Lax",
            )
        return response
