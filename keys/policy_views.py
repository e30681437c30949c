"""The administrator's Key policy page (with its dry run) and the Requests page."""

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from keys import actions
from keys.forms import DecisionForm, PolicyForm
from keys.lib.client_ip import client_ip
from keys.lib.reauth import confirmation_required, form_data
from keys.models import KeyPolicy, KeyRequest
from keys.permissions import MANAGE_KEY_POLICY

logger = logging.getLogger(__name__)
NOT_SAVED = "The key policy could not be saved; nothing was changed. Try again."


def _policy_page(request: HttpRequest, form: PolicyForm, status: int = 200) -> HttpResponse:
    context = {"form": form, "policy": KeyPolicy.current(), "section": "policy"}
    return render(request, "keys/policy.html", context, status=status)


def _posting(request: HttpRequest, *args, **kwargs) -> bool:
    return request.method == "POST"


@require_http_methods(["GET", "POST"])
@login_required
@permission_required(MANAGE_KEY_POLICY, raise_exception=True)
@confirmation_required(when=_posting)  # what every key must respect (docs/design.md §10)
def policy(request: HttpRequest) -> HttpResponse:
    """Show the policy; a POST reviews the change: one that leaves keys out of policy is
    shown as a dry run to confirm (policy_apply), any other is saved at once."""
    current = KeyPolicy.current()
    form = PolicyForm(form_data(request), policy=current)
    if request.method == "GET" or not form.is_valid():
        return _policy_page(request, form)
    left_out = actions.newly_out(form.candidate)
    if left_out:
        context = {"form": form, "left_out": left_out, "section": "policy"}
        return render(request, "keys/policy_review.html", context)
    return _apply(request, form)


@login_required
@permission_required(MANAGE_KEY_POLICY, raise_exception=True)
@require_POST
def policy_apply(request: HttpRequest) -> HttpResponse:
    """Put the reviewed policy in force (the dry run's Confirm)."""
    form = PolicyForm(request.POST, policy=KeyPolicy.current())
    if not form.is_valid():
        return _policy_page(request, form, status=400)
    return _apply(request, form)


def _apply(request: HttpRequest, form: PolicyForm) -> HttpResponse:
    try:
        _, newly, back = actions.change_policy(
            actor=request.user, ip=client_ip(request), **form.policy_fields()
        )
    except ValidationError as error:
        for field, errors in error.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
        return _policy_page(request, form, status=400)
    except DatabaseError:
        logger.exception("Changing the key policy failed; rolled back.")
        messages.error(request, NOT_SAVED)
        return _policy_page(request, form, status=503)
    said = ["The key policy was saved."]
    if newly:
        said.append(
            f"{len(newly)} key{'s are' if len(newly) != 1 else ' is'} now out of policy "
            "and refused; their owners were mailed."
        )
    if back:
        said.append(f"{len(back)} key{'s work' if len(back) != 1 else ' works'} again.")
    messages.success(request, " ".join(said))
    return redirect("policy")


# --- requests -----------------------------------------------------------------------------------


def _requests_page(request: HttpRequest, forms: dict | None = None, status: int = 200):
    open_requests = list(
        KeyRequest.objects.open().select_related("key", "key__owner", "requested_by")
    )
    forms = forms or {}
    rows = [
        (open_request, forms.get(open_request.pk) or DecisionForm(prefix=_prefix(open_request)))
        for open_request in open_requests
    ]
    return render(
        request, "keys/requests.html", {"rows": rows, "section": "requests"}, status=status
    )


def _prefix(open_request: KeyRequest) -> str:
    return f"r-{open_request.key.identifier}"


@require_GET
@login_required
@permission_required(MANAGE_KEY_POLICY, raise_exception=True)
def requests(request: HttpRequest) -> HttpResponse:
    """The requests waiting for an administrator, oldest first."""
    return _requests_page(request)


def _decide(decide, done: str):
    """The view that applies `decide` (approve or deny) to the key's open request."""

    @login_required
    @permission_required(MANAGE_KEY_POLICY, raise_exception=True)
    @require_POST
    def view(request: HttpRequest, identifier: str) -> HttpResponse:
        open_request = (
            KeyRequest.objects.open().select_related("key").filter(key__identifier=identifier)
        ).first()
        if open_request is None:
            raise Http404("No open request for this key.")
        form = DecisionForm(request.POST, prefix=_prefix(open_request))
        if form.is_valid():
            try:
                decide(
                    open_request,
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                    ip=client_ip(request),
                )
            except ValidationError as error:
                for field, errors in getattr(
                    error, "message_dict", {"__all__": error.messages}
                ).items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(request, done.format(name=open_request.key.name))
                return redirect("requests")
        return _requests_page(request, {open_request.pk: form}, status=400)

    return view


request_approve = _decide(actions.approve_request, "The request for “{name}” was approved.")
request_deny = _decide(actions.deny_request, "The request for “{name}” was denied.")
