"""The portal's form renderer: Django's own form rendering, with the portal's field markup."""

from django.forms.renderers import TemplatesSetting


class FormRenderer(TemplatesSetting):
    """Render `{{ form.field.as_field_group }}` through templates/_field.html."""

    field_template_name = "_field.html"
