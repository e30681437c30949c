"""Users in the Django admin; deactivating one goes through portal.people.deactivate_user."""

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db.models import Q

from keys.lib.client_ip import client_ip
from keys.models import AuditEvent
from portal.login import ThrottledAdminAuthenticationForm
from portal.mfa import remove_second_factor
from portal.models import User
from portal.people import deactivate_user

# Throttled by the authentication backend like every log-in; this form says so.
admin.site.login_form = ThrottledAdminAuthenticationForm


@admin.register(User)
class PortalUserAdmin(UserAdmin):
    actions = ["deactivate_selected"]
    # Roles are three groups: checkboxes, not the two-list picker (whose filter icons carry
    # an aria-label axe-core refuses).
    filter_horizontal = ["user_permissions"]

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "groups":
            kwargs["widget"] = forms.CheckboxSelectMultiple
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            # Admins manage roles (groups); only a superuser hands out superuser powers.
            fields += ["is_superuser", "user_permissions"]
        return fields

    def has_change_permission(self, request, obj=None):
        # Only a superuser changes a superuser: an admin taking over a superuser's password
        # (user_change_password checks this too) would gain every power the admin withholds.
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        if obj is not None and AuditEvent.objects.filter(Q(actor=obj) | Q(owner=obj)).exists():
            return False  # the history names them: deactivate instead (docs/design.md §5)
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        deactivating = change and "is_active" in form.changed_data and not obj.is_active
        if deactivating:
            obj.is_active = True  # deactivate_user flips it, with the keys, in one transaction
        super().save_model(request, obj, form, change)
        if deactivating:
            revoked = deactivate_user(obj, actor=request.user, ip=client_ip(request))
            obj.is_active = False
            self.message_user(request, f"{obj} was deactivated; {revoked} key(s) revoked.")

    @admin.action(permissions=["change"], description="Deactivate selected users (revokes keys)")
    def deactivate_selected(self, request, queryset):
        people = queryset.filter(is_active=True).exclude(pk=request.user.pk)
        if not request.user.is_superuser:
            people = people.exclude(is_superuser=True)  # as has_change_permission
        for person in people:
            revoked = deactivate_user(person, actor=request.user, ip=client_ip(request))
            self.message_user(request, f"{person} was deactivated; {revoked} key(s) revoked.")
        if queryset.filter(pk=request.user.pk).exists():
            self.message_user(request, "You cannot deactivate yourself.", level=messages.WARNING)
        if not request.user.is_superuser and queryset.filter(is_superuser=True).exists():
            message = "Only a superuser can deactivate a superuser."
            self.message_user(request, message, level=messages.WARNING)


# django-allauth's own admin pages would show a TOTP secret and recovery-code seed (the
# Authenticator's data) and remove factors without a trace; e-mail addresses are not how
# anyone logs in here. Second factors are listed without their data instead, and removing one
# (a person who lost their phone) is on the record.
admin.site.unregister(Authenticator)
admin.site.unregister(EmailAddress)


@admin.register(Authenticator)
class SecondFactorAdmin(admin.ModelAdmin):
    list_display = ("user", "type", "created_at", "last_used_at")
    list_filter = ("type",)
    search_fields = ("user__username",)
    fields = ("user", "type", "created_at", "last_used_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        remove_second_factor(obj, actor=request.user, ip=client_ip(request))

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            remove_second_factor(obj, actor=request.user, ip=client_ip(request))
