import os

from django.core.wsgi import get_wsgi_application

from portal.checks import refuse_to_serve

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()
# gunicorn runs no system checks: the ones that decide who the client is, and who may sign
# in, stop it here.
refuse_to_serve()
