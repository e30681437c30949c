"""{% if key|revocable_by:user %}: the model's rules, for templates (they restate none)."""

from django import template

register = template.Library()


@register.filter
def revocable_by(key, user) -> bool:
    return not key.is_revoked and key.may_be_revoked_by(user)


@register.filter
def editable_by(key, user) -> bool:
    return key.may_be_edited_by(user)
