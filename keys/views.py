"""The API Keys pages of the profile: list, add (with the one-time page), detail, edit, revoke."""

import datetime
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from keys import actions
from keys.forms import KeyForm, RegenerateForm, RenewForm, RevokeForm
from keys.lib.client_ip import client_ip
from keys.lib.networks import display_network, widened
from keys.lib.reauth import confirmation_required, form_data
from keys.models import Api, ApiKey, AuditEvent, KeyPolicy, KeyUsageDay
from keys.permissions import MANAGE_OWN_KEYS

logger = logging.getLogger(__name__)
# Each action writes its change and its audit event in one transaction; when the database
# refuses either, nothing was changed and the person is told so on the form.
NOT_SAVED = "The key could not be saved; nothing was changed. Try again."
NOT_REVOKED = "The key could not be revoked; nothing was changed. Try again."
# The newest refusals the key page shows (each stands for up to a minute of repeats).
REFUSALS_SHOWN = 50


@dataclass
class _Attempt:
    saved: bool = False


@contextmanager
def _saving(
    request: HttpRequest, form, failure: str, *args, not_saved: str = NOT_SAVED
) -> Iterator[_Attempt]:
    """Run one action in the block; `saved` is True if it went through. If it refused, say
    why where the person looks: a ValidationError next to the fields it names (on `form`,
    or as a message when there is none); a DatabaseError, logged as `failure % args`, as
    `not_saved` (the action's transaction was rolled back)."""
    attempt = _Attempt()
    try:
        yield attempt
    except ValidationError as error:
        if form is None:
            messages.error(request, " ".join(error.messages))
        else:
            fields = getattr(error, "message_dict", {"__all__": error.messages})
            for field, errors in fields.items():
                form.add_error(field if field in form.fields else None, errors)
    except DatabaseError:
        logger.exception(failure, *args)
        if form is None:
            messages.error(request, not_saved)
        else:
            form.add_error(None, not_saved)
    else:
        attempt.saved = True


def _visible_key(request: HttpRequest, identifier: str) -> ApiKey:
    """The key, if this user may see it; 404 otherwise (never reveal that it exists)."""
    try:
        return (
            ApiKey.objects.visible_to(request.user).with_listing_data().get(identifier=identifier)
        )
    except ApiKey.DoesNotExist:
        raise Http404("No such key.") from None


def _own_key(request: HttpRequest, identifier: str) -> ApiKey:
    """The key, if it is this user's; 404 if they may not see it, 403 if only see it."""
    key = _visible_key(request, identifier)
    if key.owner_id != request.user.pk:
        raise PermissionDenied("Only the key's owner can change it.")
    return key


@sensitive_variables("password")
def _show_password_once(
    request: HttpRequest, key: ApiKey, password: str, *, regenerated=False, renewed=None
) -> HttpResponse:
    """The one response that ever holds a password (after Add, Regenerate or Renew).

    Every variable the template reads is given: a missing one would make Django's template
    engine log the whole context, password included, at DEBUG level.
    """
    context = {
        "key": key,
        "password": password,
        "regenerated": regenerated,
        "renewed": renewed,
        "section": "keys",
    }
    return render(request, "keys/created.html", context)


class HtmxHttpRequest(HttpRequest):
    """A request as django-htmx's middleware hands it on (its typing advice)."""

    htmx: HtmxDetails


@require_GET
@login_required
def key_list(request: HttpRequest) -> HttpResponse:
    keys = ApiKey.objects.filter(owner_id=request.user.pk).with_listing_data()
    live_only = request.GET.get("show") == "live"
    if live_only:
        keys = keys.with_status(ApiKey.Status.ACTIVE)
    keys = list(keys)
    context = {
        "keys": keys,
        "advised": ApiKey.advised(keys),
        "live_only": live_only,
        "section": "keys",
    }
    return render(request, "keys/list.html", context)


@sensitive_variables("password")
@sensitive_post_parameters()
@never_cache
@require_http_methods(["GET", "POST"])
@login_required
@permission_required(MANAGE_OWN_KEYS, raise_exception=True)
@confirmation_required
def key_add(request: HttpRequest) -> HttpResponse:
    form = KeyForm(
        form_data(request),
        owner=request.user,
        current_ip=client_ip(request),
    )
    if request.method == "POST" and form.is_valid():
        with _saving(
            request, form, "Creating a key failed; the transaction was rolled back."
        ) as attempt:
            key, password = actions.create_key(
                owner=request.user, ip=client_ip(request), **form.key_fields()
            )
        if attempt.saved:
            # The one response that ever holds the password: rendered, never redirected to,
            # never stored (never_cache sends Cache-Control: no-store).
            return _show_password_once(request, key, password)
    return render(request, "keys/add.html", {"form": form, "section": "keys"})


def _ip_rows_view(change):
    """Decorate `change(request, rows) -> (rows, focus_row)`, an Allowed IPs row button.

    The button posts the whole form. With htmx the answer is the Allowed IPs group again,
    unjudged (so errors of a failed Save about the old rows go); without JavaScript it is the
    whole form again, unjudged, with what was typed and the rows changed.
    """

    @never_cache
    @require_http_methods(["GET", "POST"])
    @login_required
    @permission_required(MANAGE_OWN_KEYS, raise_exception=True)
    @wraps(change)
    def view(request: HtmxHttpRequest) -> HttpResponse:
        if request.method == "GET":
            return redirect("keys:add")
        key = None
        if identifier := request.POST.get("key"):
            key = _own_key(request, identifier)
        rows, focus_row = change(request, request.POST.getlist("allowed_ips"))
        data = request.POST.copy()
        data.setlist("allowed_ips", rows)
        form = KeyForm(data, key=key, owner=request.user, current_ip=client_ip(request))
        # A half-filled form: show it, do not judge it yet (Django's own mark of a form whose
        # cleaning found nothing; django-stubs leave the attribute out).
        form._errors = {}  # type: ignore[attr-defined]
        form.fields["allowed_ips"].widget.focus_row = focus_row
        if request.htmx:
            return HttpResponse(form["allowed_ips"].as_field_group())
        template = "keys/edit.html" if key else "keys/add.html"
        return render(request, template, {"form": form, "key": key, "section": "keys"})

    return view


@_ip_rows_view
def ip_row(request: HttpRequest, rows: list[str]) -> tuple[list[str], int]:
    """Add an empty row to Allowed IPs."""
    return [*rows, ""], len(rows)


@_ip_rows_view
def ip_row_remove(request: HttpRequest, rows: list[str]) -> tuple[list[str], int]:
    """Remove the row numbered by `remove` (counting from 0); the focus goes to its successor."""
    text = request.POST.get("remove", "")
    index = int(text) if text.isdecimal() else len(rows)  # isdecimal: what int() reads
    if index < len(rows):
        del rows[index]
    rows = rows or [""]
    return rows, min(index, len(rows) - 1)


@_ip_rows_view
def ip_row_mine(request: HttpRequest, rows: list[str]) -> tuple[list[str], int]:
    """Put the address the portal sees for this browser in the first empty row."""
    ip = client_ip(request)
    if ip is None:
        return rows or [""], 0
    if ip in rows:
        return rows, rows.index(ip)
    empty = next((i for i, row in enumerate(rows) if not row.strip()), len(rows))
    rows[empty : empty + 1] = [ip]
    return rows, empty


@require_GET
@login_required
def key_detail(request: HttpRequest, identifier: str) -> HttpResponse:
    key = _visible_key(request, identifier)
    events = AuditEvent.objects.filter(key=key).select_related("actor").order_by("-seq")[:50]
    usage = KeyUsageDay.objects.filter(key=key).order_by("-day")[:14]
    refusals = AuditEvent.objects.filter(key=key, action=AuditEvent.Action.USE_DENIED).order_by(
        "-seq"
    )[:REFUSALS_SHOWN]
    context = {
        "key": key,
        "events": events,
        "usage": usage,
        "refusals_by_path": _by_path(refusals),
        "is_owner": key.owner_id == request.user.pk,
        "refused_addresses": [
            (caller, widened(caller.ip)) for caller in key.refused_addresses()[:20]
        ],
        "unused_networks": key.unused_networks(),
        "unused_apis": key.unused_apis(),
        "api_names": Api.objects.names(),
        "open_request": None if key.is_revoked else key.open_request(),
        "policy_reasons": _policy_reasons(key),
        "section": "keys",
    }
    return render(request, "keys/detail.html", context)


def _policy_reasons(key: ApiKey) -> list[str]:
    """Why the key policy in force leaves a key marked out of policy, in words."""
    if key.policy_state != "out_of_policy":
        return []
    found = key.policy_violations(KeyPolicy.current())
    return [message for messages in found.values() for message in messages]


@dataclass
class PathRefusals:
    """The recent refusals of calls to one path, newest first."""

    path: str
    events: list[AuditEvent]

    @property
    def calls(self) -> int:
        return sum(event.details.get("count", 1) for event in self.events)


def _by_path(refusals) -> list[PathRefusals]:
    """Refusals grouped by the path called, the most recently refused path first: a caller
    debugging one endpoint reads its refusals apart from the others'."""
    groups: dict[str, PathRefusals] = {}
    for event in refusals:
        path = event.details.get("path") or ""
        groups.setdefault(path, PathRefusals(path, [])).events.append(event)
    return list(groups.values())


def _turns_on_self_rotation(request: HttpRequest, identifier: str) -> bool:
    """True if this edit lets the key rotate itself and it may not yet: a protected act."""
    if request.method != "POST" or not request.POST.get("may_rotate_itself"):
        return False
    return not ApiKey.objects.filter(identifier=identifier, may_rotate_itself=True).exists()


@require_http_methods(["GET", "POST"])
@login_required
@permission_required(MANAGE_OWN_KEYS, raise_exception=True)
@confirmation_required(when=_turns_on_self_rotation)
def key_edit(request: HttpRequest, identifier: str) -> HttpResponse:
    key = _own_key(request, identifier)
    if key.is_revoked:
        messages.error(request, "A revoked key cannot be changed.")
        return redirect("keys:detail", identifier=key.identifier)
    form = KeyForm(form_data(request), key=key, current_ip=client_ip(request))
    if request.method == "POST" and form.is_valid():
        with _saving(
            request, form, "Editing key %s failed; rolled back.", key.identifier
        ) as attempt:
            key = actions.edit_key(
                key, actor=request.user, ip=client_ip(request), **form.key_fields()
            )
        if attempt.saved:
            waits = " It waits for an administrator's approval." if key.awaiting_approval else ""
            if form.validated["needs_approval"] and not key.awaiting_approval:
                waits = (
                    " Its new allowed IPs wait for an administrator's approval; until then it "
                    "keeps working with its current ones."
                )
            messages.success(request, "The key was saved." + waits)
            return redirect("keys:detail", identifier=key.identifier)
    return render(request, "keys/edit.html", {"form": form, "key": key, "section": "keys"})


@require_http_methods(["GET", "POST"])
@login_required
@confirmation_required
def key_revoke(request: HttpRequest, identifier: str) -> HttpResponse:
    key = _visible_key(request, identifier)
    if not key.may_be_revoked_by(request.user):
        raise PermissionDenied("You may not revoke this key.")
    if key.is_revoked:
        messages.info(request, "This key is already revoked.")
        return redirect("keys:detail", identifier=key.identifier)
    reason_required = key.revocation_needs_reason(request.user)
    form = RevokeForm(form_data(request), reason_required=reason_required)
    if request.method == "POST" and form.is_valid():
        failure = "Revoking key %s failed; rolled back."
        with _saving(request, form, failure, key.identifier, not_saved=NOT_REVOKED) as attempt:
            actions.revoke_key(
                key,
                actor=request.user,
                reason=form.cleaned_data["reason"],
                ip=client_ip(request),
            )
        if attempt.saved:
            messages.success(request, f"The key “{key.name}” was revoked.")
            return redirect("keys:detail", identifier=key.identifier)
    return render(
        request,
        "keys/revoke.html",
        {"key": key, "form": form, "reason_required": reason_required, "section": "keys"},
    )


def _owner_may_change(request: HttpRequest, identifier: str) -> ApiKey:
    """The key, if this user owns it and may still change it (regenerate, renew)."""
    key = _own_key(request, identifier)
    if not key.may_be_edited_by(request.user):
        raise PermissionDenied("A revoked key cannot be changed.")
    return key


@sensitive_variables("password")
@never_cache
@require_http_methods(["GET", "POST"])
@login_required
@permission_required(MANAGE_OWN_KEYS, raise_exception=True)
@confirmation_required
def key_regenerate(request: HttpRequest, identifier: str) -> HttpResponse:
    """A new password for the same key, shown once; the old one works for the overlap."""
    key = _owner_may_change(request, identifier)
    if not key.may_get_a_new_password_from(request.user):
        if key.is_being_replaced:
            messages.info(request, "This key is being replaced: regenerate the new key's password.")
        else:
            messages.info(request, "Only an active key gets a new password: renew this one.")
        return redirect("keys:detail", identifier=key.identifier)
    form = RegenerateForm(form_data(request))
    if request.method == "POST" and form.is_valid():
        failure = "Regenerating key %s failed; rolled back."
        with _saving(request, form, failure, key.identifier) as attempt:
            key, password = actions.regenerate_password(
                key, actor=request.user, overlap=form.overlap_delta(), ip=client_ip(request)
            )
        if attempt.saved:
            return _show_password_once(request, key, password, regenerated=True)
    return render(request, "keys/regenerate.html", {"key": key, "form": form, "section": "keys"})


@sensitive_variables("password")
@never_cache
@require_http_methods(["GET", "POST"])
@login_required
@permission_required(MANAGE_OWN_KEYS, raise_exception=True)
@confirmation_required
def key_renew(request: HttpRequest, identifier: str) -> HttpResponse:
    """A new key with this one's settings; this one is revoked when the overlap ends."""
    key = _owner_may_change(request, identifier)
    if not key.may_be_renewed_by(request.user):
        messages.info(request, "This key is already renewed: renew the new key instead.")
        return redirect("keys:detail", identifier=key.identifier)
    form = RenewForm(form_data(request))
    if request.method == "POST" and form.is_valid():
        with _saving(
            request, form, "Renewing key %s failed; rolled back.", key.identifier
        ) as attempt:
            new, password = actions.renew_key(
                key,
                actor=request.user,
                expires_on=form.cleaned_data["expires_on"],
                overlap=datetime.timedelta(days=form.cleaned_data["overlap_days"]),
                ip=client_ip(request),
            )
        if attempt.saved:
            return _show_password_once(request, new, password, renewed=key)
    return render(request, "keys/renew.html", {"key": key, "form": form, "section": "keys"})


def _narrow(change):
    """Decorate `change(key, request) -> (networks, apis, message)`: a one-click edit of the
    key page's least-privilege advice, made through actions.edit_key like any edit."""

    @login_required
    @permission_required(MANAGE_OWN_KEYS, raise_exception=True)
    @require_POST
    @wraps(change)
    def view(request: HttpRequest, identifier: str) -> HttpResponse:
        key = _owner_may_change(request, identifier)
        with _saving(
            request, None, "Editing key %s failed; rolled back.", key.identifier
        ) as attempt:
            networks, apis, done = change(key, request)
            actions.edit_key(
                key,
                actor=request.user,
                name=key.name,
                expires_on=key.expires_on,
                networks=networks,
                apis=apis,
                ip=client_ip(request),
            )
        if attempt.saved:
            messages.success(request, done)
        return redirect("keys:detail", identifier=key.identifier)

    return view


def _networks(key: ApiKey) -> list[str]:
    return [entry.network for entry in key.allowed_ips.all()]


@_narrow
def key_allow_address(key: ApiKey, request: HttpRequest):
    """Add a refused address (or its /24 or /64) to the allowed IPs."""
    network = request.POST.get("network", "")
    return [*_networks(key), network], list(key.apis.all()), f"{network} is now allowed."


@_narrow
def key_remove_network(key: ApiKey, request: HttpRequest):
    """Remove an allowed IP entry (offered when unused for 90 days)."""
    network = request.POST.get("network", "")
    if network not in _networks(key):
        raise ValidationError("This key has no such allowed IP entry.")
    kept = [entry for entry in _networks(key) if entry != network]
    return kept, list(key.apis.all()), f"{display_network(network)} is no longer allowed."


@_narrow
def key_remove_api(key: ApiKey, request: HttpRequest):
    """Withdraw an API from the key (offered when unused for 90 days)."""
    slug = request.POST.get("api", "")
    kept = [api for api in key.apis.all() if api.slug != slug]
    if len(kept) == key.apis.count():
        raise ValidationError("This key does not hold that API.")
    return _networks(key), kept, "The API was removed from this key."
