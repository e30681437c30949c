"""seed_audit_demo fills the history for measuring; the chain it writes stays valid."""

import io

import pytest
from django.core.management import CommandError, call_command

from keys.audit import chain as audit
from keys.models import ApiKey, AuditEvent, AuditHead


def test_seeding_appends_n_events_on_a_valid_chain(django_user_model, make_key):
    demo = django_user_model.objects.create_user("demo-first")
    make_key(demo)  # events before the seed (user created, key created): the demo continues
    before = AuditHead.objects.get().seq
    call_command("seed_audit_demo", "500", "--users", "3", "--batch", "200", stdout=io.StringIO())
    assert AuditHead.objects.get().seq == before + 500
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, before + 501))
    assert list(audit.verify_chain()) == []


def test_seeded_events_never_run_backwards_in_time(db):
    call_command("seed_audit_demo", "300", "--users", "2", stdout=io.StringIO())
    times = list(AuditEvent.objects.order_by("seq").values_list("at", flat=True))
    assert times == sorted(times)


def test_seeding_twice_continues_the_same_chain(db):
    call_command("seed_audit_demo", "100", "--users", "2", stdout=io.StringIO())
    call_command("seed_audit_demo", "100", "--users", "2", stdout=io.StringIO())
    assert AuditHead.objects.get().seq == 200
    assert list(audit.verify_chain()) == []


def test_demo_keys_share_one_hash_of_a_discarded_password(db):
    call_command("seed_audit_demo", "50", "--users", "2", stdout=io.StringIO())
    hashes = set(ApiKey.objects.values_list("password_hash", flat=True))
    assert len(hashes) == 1 and hashes.pop().startswith("$argon2id$")


def test_the_history_bench_runs_on_seeded_data(db):
    call_command("seed_audit_demo", "300", "--users", "2", stdout=io.StringIO())
    out = io.StringIO()
    call_command("bench_audit_history", "--runs", "1", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("300 events")
    assert any(line.startswith("first page") for line in lines)
    assert any(line.startswith("deep page (oldest)") for line in lines)


def test_seed_refuses_a_database_with_real_keys(alice, make_key):
    make_key(alice)
    before = AuditEvent.objects.count()
    with pytest.raises(CommandError, match="real keys"):
        call_command("seed_audit_demo", "50", "--users", "2", stdout=io.StringIO())
    assert AuditEvent.objects.count() == before
