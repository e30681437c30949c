"""The single sign-on button of the log-in page (portal/sso.py), only when it is configured."""

from django import template
from django.urls import reverse

from portal import sso

register = template.Library()


@register.inclusion_tag("portal/_sso_button.html", takes_context=True)
def sso_button(context) -> dict:
    """A "Sign in with <label>" button that starts single sign-on, keeping `next`."""
    if not sso.configured():
        return {"show": False}
    request = context.get("request")
    # Without a `next`, back to `/`, which sends each person where their role starts.
    next_url = (request.GET.get("next") if request is not None else None) or reverse("home")
    return {
        "show": True,
        "action": reverse("openid_connect_login", kwargs={"provider_id": sso.PROVIDER_ID}),
        "label": sso.button_label(),
        "next": next_url,
        "csrf_token": context.get("csrf_token"),
    }
