"""Changes to the API catalogue, each with its audit event in the same transaction."""

from django.core.exceptions import ValidationError
from django.db import transaction

from keys.actions.keys import keep_policy_mark, key_snapshot
from keys.audit import chain
from keys.models import Api, ApiKey, ApiRoute, AuditEvent

Action = AuditEvent.Action


_API_FIELDS = ("slug", "name", "description", "position", "is_active")


def _api_snapshot(api: Api) -> dict:
    return {field: getattr(api, field) for field in _API_FIELDS}


def save_api(api: Api, *, actor, ip: str | None = None) -> Api:
    """Add or change a catalogue entry; a slug in use by keys never changes."""
    with transaction.atomic():
        if api.pk is None:
            before = None
        else:
            stored = Api.objects.select_for_update().get(pk=api.pk)
            before = _api_snapshot(stored)
            if stored.slug != api.slug and stored.keys.exists():
                raise ValidationError(
                    {"slug": ["Keys hold this API: its path segment cannot change."]}
                )
        api.full_clean()
        api.save()
        if before is not None and before["is_active"] and not api.is_active:
            _withdraw(api, actor=actor, ip=ip)
        after = _api_snapshot(api)
        if before is None:
            details = {"api": api.slug, "change": "added", "after": after}
        else:
            changes = chain.changes(before, after)
            if not changes:
                return api
            details = {"api": api.slug, "change": "changed", "changes": changes}
        chain.record(Action.CATALOGUE_CHANGED, actor=actor, ip=ip, details=details)
    return api


def _withdraw(api: Api, *, actor, ip: str | None) -> None:
    """A deactivated API leaves every live key that holds it, each an audited edit."""
    for key in ApiKey.objects.live().filter(apis=api).select_for_update().order_by("pk"):
        before = key_snapshot(key)
        key.apis.remove(api)
        key.revision += 1  # the next call of any process reads the new grants
        key.save()
        keep_policy_mark(key)  # an API its owner's role may not grant may have been the one
        chain.record(
            Action.KEY_EDITED,
            key=key,
            actor=actor,
            ip=ip,
            details={
                "apis": {"before": before["apis"], "after": key_snapshot(key)["apis"]},
                "reason": f"API “{api.name}” was deactivated in the catalogue.",
            },
        )


def delete_api(api: Api, *, actor, ip: str | None = None) -> None:
    """Remove a catalogue entry no key ever held; otherwise refuse (deactivate it instead)."""
    with transaction.atomic():
        api = Api.objects.select_for_update().get(pk=api.pk)
        if api.keys.exists():
            raise ValidationError(
                f"Keys hold the API “{api.name}”: deactivate it instead of deleting it."
            )
        details = {"api": api.slug, "change": "deleted", "before": _api_snapshot(api)}
        api.delete()
        chain.record(Action.CATALOGUE_CHANGED, actor=actor, ip=ip, details=details)


# --- expiry reminders ------------------------------------------------------------------------


def route_snapshot(api: Api) -> list[str]:
    """The API's routes as host + path prefix, sorted: what the history shows of them."""
    if api.pk is None:
        return []
    return sorted(str(route) for route in ApiRoute.objects.filter(api=api))


def routes_changed(api: Api, *, before: list[str], actor, ip: str | None = None) -> None:
    """Record a change of the API's routes (made by the admin's inline forms)."""
    if changes := chain.changes({"routes": before}, {"routes": route_snapshot(api)}):
        details = {"api": api.slug, "change": "changed", "changes": changes}
        chain.record(Action.CATALOGUE_CHANGED, actor=actor, ip=ip, details=details)
