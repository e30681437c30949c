"""Settings for bench/portal_pages.py: the production settings, plus this folder as an app so
its seed_audit_demo and bench_audit_history commands are there (the product has neither)."""

from portal.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]  # noqa: F405
