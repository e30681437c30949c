"""The Streaming pages under Audit history (docs/design.md §11).

Auditors and admins see each destination's delivery (sent, failed, lag, last error); admins
add, change and remove destinations, send a test message and replay from a sequence number.
Every change is an action with its audit event (keys.actions.streaming).
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from keys.actions.streaming import (
    add_destination,
    change_destination,
    remove_destination,
    replay_destination,
)
from keys.audit import delivery
from keys.audit.stream_forms import DestinationForm, ReplayForm
from keys.lib.client_ip import client_ip
from keys.lib.reauth import confirmation_required, form_data
from keys.lib.stream_transports import DeliveryError
from keys.models import AuditHead, StreamDestination
from keys.permissions import MANAGE_STREAMING, VIEW_AUDIT


@never_cache
@require_GET
@login_required
@permission_required(VIEW_AUDIT, raise_exception=True)
def streaming(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    destinations = [
        (destination, destination.status(now)) for destination in StreamDestination.objects.all()
    ]
    context = {
        "destinations": destinations,
        "head_seq": AuditHead.objects.values_list("seq", flat=True).get(pk=1),
        "may_manage": request.user.has_perm(MANAGE_STREAMING),
    }
    return render(request, "audit/streaming.html", context)


def _secret_page(request, destination: StreamDestination, secret: str) -> HttpResponse:
    """The generated secret, in this response only (never a message, session or redirect)."""
    return render(
        request, "audit/stream_secret.html", {"destination": destination, "secret": secret}
    )


def _posting(request: HttpRequest, *args, **kwargs) -> bool:
    return request.method == "POST"


# Changing where the auditors' copy goes, or stopping it, waits for a fresh proof of identity
# (docs/design.md §10) like the acts on keys do; the secret and the custom headers (a
# Splunk token, say) are never held across the confirmation (keys.lib.reauth.NOT_KEPT).
@never_cache
@sensitive_post_parameters("entered_secret", "headers_text")
@require_http_methods(["GET", "POST"])
@login_required
@permission_required(MANAGE_STREAMING, raise_exception=True)
@confirmation_required(when=_posting)
def destination_add(request: HttpRequest) -> HttpResponse:
    form = DestinationForm(form_data(request))
    if request.method == "POST" and form.is_valid():
        try:
            destination = add_destination(form.instance, actor=request.user, ip=client_ip(request))
        except ValidationError as error:
            form.add_error(None, error)
        else:
            if form.generated_secret:
                return _secret_page(request, destination, form.generated_secret)
            messages.success(request, f"Destination “{destination.name}” added.")
            return redirect("audit:streaming")
    status = 400 if form.errors else 200
    return render(request, "audit/stream_form.html", {"form": form}, status=status)


@never_cache
@sensitive_post_parameters("entered_secret", "headers_text")
@require_http_methods(["GET", "POST"])
@login_required
@permission_required(MANAGE_STREAMING, raise_exception=True)
@confirmation_required(when=_posting)
def destination_edit(request: HttpRequest, identifier: str) -> HttpResponse:
    destination = get_object_or_404(StreamDestination, identifier=identifier)
    form = DestinationForm(form_data(request), instance=destination)
    if request.method == "POST" and form.is_valid():
        try:
            destination = change_destination(
                form.instance, actor=request.user, ip=client_ip(request)
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            if form.generated_secret:
                return _secret_page(request, destination, form.generated_secret)
            messages.success(request, f"Destination “{destination.name}” saved.")
            return redirect("audit:streaming")
    return _edit_page(request, destination, form, ReplayForm())


def _edit_page(request, destination, form, replay_form) -> HttpResponse:
    stored = StreamDestination.objects.get(pk=destination.pk)
    context = {
        "form": form,
        "destination": stored,
        "replay_form": replay_form,
        "status": stored.status(timezone.now()),
    }
    status = 400 if form.errors or replay_form.errors else 200
    return render(request, "audit/stream_form.html", context, status=status)


@require_http_methods(["GET", "POST"])
@login_required
@permission_required(MANAGE_STREAMING, raise_exception=True)
@confirmation_required(when=_posting)
def destination_remove(request: HttpRequest, identifier: str) -> HttpResponse:
    destination = get_object_or_404(StreamDestination, identifier=identifier)
    if request.method == "POST":
        remove_destination(destination, actor=request.user, ip=client_ip(request))
        messages.success(request, f"Destination “{destination.name}” removed.")
        return redirect("audit:streaming")
    return render(request, "audit/stream_remove.html", {"destination": destination})


@login_required
@permission_required(MANAGE_STREAMING, raise_exception=True)
@require_POST
def destination_test(request: HttpRequest, identifier: str) -> HttpResponse:
    """Send one test message (not an audit event) now and say what the receiver answered."""
    destination = get_object_or_404(StreamDestination, identifier=identifier)
    try:
        answer = delivery.send_test(destination)
    except DeliveryError as error:
        messages.error(request, f"Test message to “{destination.name}” failed: {error}.")
    else:
        messages.success(request, f"Test message to “{destination.name}”: {answer}.")
    return redirect("audit:streaming")


@login_required
@permission_required(MANAGE_STREAMING, raise_exception=True)
@require_POST
def destination_replay(request: HttpRequest, identifier: str) -> HttpResponse:
    destination = get_object_or_404(StreamDestination, identifier=identifier)
    replay_form = ReplayForm(request.POST)
    if replay_form.is_valid():
        try:
            destination = replay_destination(
                destination,
                from_seq=replay_form.cleaned_data["from_seq"],
                actor=request.user,
                ip=client_ip(request),
            )
        except ValidationError as error:
            replay_form.add_error(None, error)
        else:
            messages.success(
                request,
                f"“{destination.name}” sends again from event "
                f"{replay_form.cleaned_data['from_seq']} on.",
            )
            return redirect("audit:streaming")
    return _edit_page(request, destination, DestinationForm(instance=destination), replay_form)
