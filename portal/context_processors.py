def session_idle(request) -> dict:
    """How long a signed-in session lasts without a request (the idle log-out warning)."""
    from django.conf import settings

    return {"session_idle_seconds": settings.SESSION_COOKIE_AGE}
