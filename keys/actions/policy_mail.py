"""The key policy's mails: a request to the administrators, a decision or an out-of-policy
notice to a key's owner (Django's mail, as the expiry reminders).

They go out after the change is committed: a mail server that is down must not undo an
approval. A mail that fails is logged and not retried; the Requests page and the key page
say the same, so nobody depends on the mail alone.
"""

import logging

from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.template.loader import render_to_string

from keys.actions.reminders import portal_url
from keys.models import ApiKey, KeyRequest, users_with_perm
from keys.permissions import MANAGE_KEY_POLICY

logger = logging.getLogger(__name__)


def _send(subject: str, template: str, context: dict, recipients: list[str]) -> None:
    recipients = [address for address in recipients if address]
    if not recipients:
        return
    try:
        send_mail(
            subject=subject,
            message=render_to_string(template, context),
            from_email=None,
            recipient_list=recipients,
        )
    except Exception:
        logger.exception("Mail %r could not be sent", subject)


def request_to_admins(request: KeyRequest) -> None:
    """Tell the administrators that a request waits on the Requests page."""
    admins = users_with_perm(get_user_model().objects.all(), MANAGE_KEY_POLICY)
    key = request.key
    _send(
        f"Approval requested: API key “{key.name}” of {key.owner.get_username()}",
        "keys/mail/request.txt",
        {"request": request, "key": key, "url": portal_url("keys:detail", key)},
        list(admins.values_list("email", flat=True)),
    )


def decision_to_owner(request: KeyRequest) -> None:
    key = request.key
    _send(
        f"{request.get_decision_display()}: your request for API key “{key.name}”",
        "keys/mail/decision.txt",
        {"request": request, "key": key, "url": portal_url("keys:detail", key)},
        [key.owner.email],
    )


def out_of_policy_to_owners(keys: list[ApiKey]) -> None:
    """One mail per owner, listing their keys the new policy leaves out."""
    by_owner: dict[int, list[ApiKey]] = {}
    for key in keys:
        by_owner.setdefault(key.owner_id, []).append(key)
    for owned in by_owner.values():
        owner = owned[0].owner
        _send(
            f"{len(owned)} of your API keys {'is' if len(owned) == 1 else 'are'} out of policy",
            "keys/mail/out_of_policy.txt",
            {
                "owner": owner,
                "keys": [(key, portal_url("keys:edit", key)) for key in owned],
            },
            [owner.email],
        )
