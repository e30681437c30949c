"""The Django admin for keys: read-only keys (never the hash), revoke through the action,
read-only audit events, and a catalogue whose changes are audited."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.template.response import TemplateResponse

from keys import actions
from keys.forms import RevokeForm
from keys.lib.client_ip import client_ip
from keys.models import Api, ApiKey, ApiRoute, AuditEvent
from keys.permissions import REVOKE_ANY_KEY


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return ApiKey.Status.choices

    def queryset(self, request, queryset):
        # A status that is none of the choices (a hand-edited ?status=) filters nothing,
        # as the admin's own filters ignore values they do not know.
        if self.value() in ApiKey.Status.values:
            return queryset.with_status(self.value())
        return queryset


# Every field of a key but password_hash: the hash never leaves the database.
_KEY_FIELDS = (
    "identifier",
    "name",
    "description",
    "owner",
    "created_at",
    "expires_on",
    "latest_expires_on",
    "apis",
    "allowed_ip_list",
    "revoked_at",
    "revoked_by",
    "revoke_reason",
    "last_used_at",
    "last_used_ip",
)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "identifier", "owner", "expires_on", "status", "last_used_at"]
    list_filter = [StatusFilter, "apis"]
    list_select_related = ["owner"]
    search_fields = ["name", "identifier", "owner__username"]
    fields = _KEY_FIELDS
    readonly_fields = _KEY_FIELDS
    actions = ["revoke_selected"]

    def has_add_permission(self, request):
        return False  # keys are created by their owners, through keys.actions.create_key

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # keys are revoked, never deleted

    def has_revoke_permission(self, request):
        return request.user.has_perm(REVOKE_ANY_KEY)

    @admin.display(description="status")
    def status(self, key: ApiKey) -> str:
        return key.get_status_display()

    @admin.display(description="allowed IPs")
    def allowed_ip_list(self, key: ApiKey) -> str:
        return ", ".join(str(entry) for entry in key.allowed_ips.all()) or "any"

    @admin.action(permissions=["revoke"], description="Revoke selected keys (asks for a reason)")
    def revoke_selected(self, request, queryset):
        keys = [
            key
            for key in queryset.live().select_related("owner")
            if key.may_be_revoked_by(request.user)
        ]
        form = RevokeForm(
            request.POST if "confirm" in request.POST else None,
            reason_required=any(key.revocation_needs_reason(request.user) for key in keys),
        )
        if form.is_valid():
            revoked = 0
            for key in keys:
                try:
                    actions.revoke_key(
                        key,
                        actor=request.user,
                        reason=form.cleaned_data["reason"],
                        ip=client_ip(request),
                    )
                except (ValidationError, DatabaseError) as error:
                    reason = "; ".join(getattr(error, "messages", [])) or "database error"
                    self.message_user(
                        request, f"{key} was not revoked: {reason}", level=messages.ERROR
                    )
                else:
                    revoked += 1
            self.message_user(request, f"Revoked {revoked} key(s).", level=messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Revoke API keys",
            "opts": self.model._meta,
            "keys": keys,
            "form": form,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/keys/apikey/revoke_selected.html", context)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: events are appended by keys.audit.chain.record() and never changed."""

    list_display = ["seq", "at", "action", "actor_label", "key_identifier", "owner"]
    list_filter = ["action"]
    list_select_related = ["owner"]
    show_full_result_count = False
    ordering = ["-seq"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ApiAdminForm(forms.ModelForm):
    class Meta:
        model = Api
        fields = ["slug", "name", "description", "position", "is_active"]

    def clean_slug(self):
        slug = self.cleaned_data["slug"]
        if self.instance.pk and slug != self.instance.slug and self.instance.admins_only:
            raise ValidationError("The portal serves this API itself: its path segment is fixed.")
        if self.instance.pk and slug != self.instance.slug and self.instance.keys.exists():
            raise ValidationError("Keys hold this API: its path segment cannot change.")
        return slug


class ApiRouteInline(admin.TabularInline):
    """Where the API is served, for the gateway check; saved through keys.actions."""

    model = ApiRoute
    extra = 1
    fields = ["host", "path_prefix"]


@admin.register(Api)
class ApiAdmin(admin.ModelAdmin):
    """Every change goes through keys.actions, which records it in the audit history."""

    form = ApiAdminForm
    inlines = [ApiRouteInline]
    list_display = ["name", "slug", "position", "is_active", "route_list"]
    # Who may grant an API and how is the portal's rule (the Audit history API), not a setting.
    readonly_fields = ["admins_only", "read_only"]

    @admin.display(description="routes")
    def route_list(self, obj: Api) -> str:
        return ", ".join(str(route) for route in obj.routes.all())

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("routes")

    def save_related(self, request, form, formsets, change):
        # The admin saves the inline routes itself (inside its transaction); what changed is
        # recorded in the history by the catalogue action, with before and after.
        before = actions.route_snapshot(form.instance)
        super().save_related(request, form, formsets, change)
        actions.routes_changed(
            form.instance, before=before, actor=request.user, ip=client_ip(request)
        )

    def get_actions(self, request):
        found = super().get_actions(request)
        found.pop("delete_selected", None)  # one by one, through delete_model
        return found

    def has_delete_permission(self, request, obj=None):
        # An API that keys hold stays in the catalogue: deactivate it instead.
        if obj is not None and obj.keys.exists():
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        actions.save_api(obj, actor=request.user, ip=client_ip(request))

    def delete_model(self, request, obj):
        actions.delete_api(obj, actor=request.user, ip=client_ip(request))
