"""The key rules of docs/design.md §3, enforced by the model whatever the code path."""

import datetime
import zoneinfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import override_settings

from keys import actions, tokens
from keys.models import AllowedIp, Api, ApiKey, latest_expiry_for, local_date
from keys.validators import normalise_network

AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")


def at(year, month, day, hour=12, tz=AMSTERDAM):
    return datetime.datetime(year, month, day, hour, tzinfo=tz)


# --- the one-year limit ----------------------------------------------------------------------


def test_latest_expiry_is_the_same_calendar_date_a_year_later():
    assert latest_expiry_for(datetime.date(2026, 3, 15)) == datetime.date(2027, 3, 15)


def test_latest_expiry_for_29_february_is_28_february():
    assert latest_expiry_for(datetime.date(2028, 2, 29)) == datetime.date(2029, 2, 28)


@time_machine.travel(at(2026, 5, 10), tick=False)
def test_expiry_exactly_one_year_after_creation_is_accepted(alice, make_key):
    key, _ = make_key(alice, expires_on=datetime.date(2027, 5, 10))
    assert key.expires_on == datetime.date(2027, 5, 10)


@time_machine.travel(at(2026, 5, 10), tick=False)
def test_expiry_one_day_past_a_year_is_refused(alice, make_key):
    with pytest.raises(ValidationError) as error:
        make_key(alice, expires_on=datetime.date(2027, 5, 11))
    assert "at most one year" in str(error.value.message_dict["expires_on"])
    assert not ApiKey.objects.exists()


@time_machine.travel(at(2028, 2, 29), tick=False)
def test_key_created_on_29_february_may_expire_on_28_february_but_not_1_march(alice, make_key):
    key, _ = make_key(alice, expires_on=datetime.date(2029, 2, 28))
    assert key.latest_expires_on == datetime.date(2029, 2, 28)
    with pytest.raises(ValidationError):
        make_key(alice, name="other", expires_on=datetime.date(2029, 3, 1))


@time_machine.travel(at(2026, 5, 10), tick=False)
def test_expiry_today_is_accepted_and_yesterday_refused(alice, make_key):
    make_key(alice, name="today", expires_on=datetime.date(2026, 5, 10))
    with pytest.raises(ValidationError) as error:
        make_key(alice, name="yesterday", expires_on=datetime.date(2026, 5, 9))
    assert "cannot be in the past" in str(error.value)


@override_settings(TIME_ZONE="Pacific/Auckland")
def test_creation_date_is_the_date_in_the_portal_time_zone(alice, make_key):
    # 20:00 UTC on 10 May is already 11 May in Auckland (UTC+12).
    with time_machine.travel(datetime.datetime(2026, 5, 10, 20, tzinfo=datetime.UTC), tick=False):
        assert local_date() == datetime.date(2026, 5, 11)
        key, _ = make_key(alice, expires_on=datetime.date(2027, 5, 11))
        assert key.created_on == datetime.date(2026, 5, 11)
        with pytest.raises(ValidationError):
            make_key(alice, name="in utc terms", expires_on=datetime.date(2026, 5, 10))


@override_settings(TIME_ZONE="Pacific/Auckland")
def test_key_is_valid_through_the_end_of_its_date_in_the_portal_time_zone(alice, make_key):
    with time_machine.travel(at(2026, 5, 10, tz=zoneinfo.ZoneInfo("Pacific/Auckland"))):
        key, _ = make_key(alice, expires_on=datetime.date(2026, 5, 10))
    last_moment = datetime.datetime(
        2026, 5, 10, 23, 59, 59, tzinfo=zoneinfo.ZoneInfo("Pacific/Auckland")
    )
    assert key.status(at=last_moment) == ApiKey.Status.ACTIVE
    assert key.status(at=last_moment + datetime.timedelta(seconds=1)) == ApiKey.Status.EXPIRED
    assert list(ApiKey.objects.usable(at=last_moment)) == [key]
    assert list(ApiKey.objects.usable(at=last_moment + datetime.timedelta(seconds=1))) == []


def test_editing_may_shorten_the_expiry(alice, make_key, today):
    key, _ = make_key(alice)
    actions.edit_key(
        key,
        actor=alice,
        name=key.name,
        expires_on=today + datetime.timedelta(days=5),
        networks=["127.0.0.1"],
        apis=key.apis.all(),
    )
    key.refresh_from_db()
    assert key.expires_on == today + datetime.timedelta(days=5)


def test_editing_never_moves_the_expiry_later(alice, make_key, today):
    key, _ = make_key(alice, expires_on=today + datetime.timedelta(days=5))
    with pytest.raises(ValidationError) as error:
        actions.edit_key(
            key,
            actor=alice,
            name=key.name,
            expires_on=today + datetime.timedelta(days=6),
            networks=["127.0.0.1"],
            apis=key.apis.all(),
        )
    assert "only be shortened" in str(error.value)
    key.refresh_from_db()
    assert key.expires_on == today + datetime.timedelta(days=5)


def test_save_from_code_cannot_extend_the_expiry_past_a_year(alice, make_key):
    key, _ = make_key(alice)
    key.expires_on = key.latest_expires_on + datetime.timedelta(days=1)
    with pytest.raises(ValidationError):
        key.save()


def test_database_refuses_an_expiry_past_a_year_even_through_update(alice, make_key):
    key, _ = make_key(alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKey.objects.filter(pk=key.pk).update(
            expires_on=key.latest_expires_on + datetime.timedelta(days=1)
        )


# --- secrets and identity ----------------------------------------------------------------------


def test_only_an_argon2id_hash_of_the_password_is_stored(alice, make_key):
    key, password = make_key(alice)
    key.refresh_from_db()
    assert key.password_hash.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert password not in key.password_hash
    assert tokens.verify_password(key.password_hash, password)
    assert not tokens.verify_password(key.password_hash, tokens.generate_password(key.identifier))


def test_identifier_and_password_have_prefix_base62_and_checksum():
    identifier = tokens.generate_identifier()
    password = tokens.generate_password(identifier)
    assert identifier.startswith("ckid_") and tokens.is_identifier(identifier)
    assert password.startswith("ckpw_") and tokens.is_password(password)
    assert len(password) == len("ckpw_") + 20 + 40 + 6
    assert not tokens.is_password(identifier) and not tokens.is_identifier(password)


def test_a_mistyped_password_fails_its_checksum():
    password = tokens.generate_password(tokens.generate_identifier())
    i = 10
    typo = password[:i] + ("a" if password[i] != "a" else "b") + password[i + 1 :]
    assert not tokens.is_password(typo)
    assert not tokens.is_password(password[:-1])
    assert not tokens.is_password(password + "x")


def test_keys_cannot_be_created_by_saving_a_bare_model(alice):
    key = ApiKey(owner=alice, name="x", expires_on=local_date())
    with pytest.raises(ValueError):
        key.save()


def test_keys_are_never_deleted(alice, make_key):
    key, _ = make_key(alice)
    with pytest.raises(ValueError):
        key.delete()


# --- names, APIs, allowed IPs ---------------------------------------------------------------


def test_name_is_unique_among_the_owners_live_keys(alice, bob, make_key):
    make_key(alice, name="CI")
    with pytest.raises(ValidationError) as error:
        make_key(alice, name="CI")
    assert "already have a key with this name" in str(error.value.message_dict["name"])
    make_key(bob, name="CI")  # another owner may use it


def test_name_of_a_revoked_key_may_be_reused(alice, make_key):
    key, _ = make_key(alice, name="CI")
    actions.revoke_key(key, actor=alice)
    reused, _ = make_key(alice, name="CI")
    assert reused.pk != key.pk


def test_at_least_one_api_is_required(alice, make_key):
    with pytest.raises(ValidationError) as error:
        make_key(alice, apis=())
    assert "at least one API" in str(error.value.message_dict["apis"])
    assert not ApiKey.objects.exists()


def test_at_least_one_allowed_ip_is_required_by_default(alice, make_key):
    with pytest.raises(ValidationError) as error:
        make_key(alice, networks=())
    assert "allowed_ips" in error.value.message_dict


@override_settings(KEYS_REQUIRE_ALLOWED_IPS=False)
def test_allowed_ips_may_be_empty_when_the_setting_allows(alice, make_key):
    key, _ = make_key(alice, networks=())
    assert not key.allowed_ips.exists()


@pytest.mark.parametrize(
    ("entry", "stored"),
    [
        ("192.0.2.7", "192.0.2.7/32"),
        (" 10.0.0.0/16 ", "10.0.0.0/16"),
        ("2001:DB8::1", "2001:db8::1/128"),
        ("2001:db8:0:0::/64", "2001:db8::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7/32"),
        ("::ffff:10.0.0.0/112", "10.0.0.0/16"),
    ],
)
def test_allowed_ips_are_stored_normalised(entry, stored):
    assert normalise_network(entry) == stored


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("10.0.0.1/8", "host bits set; did you mean 10.0.0.0/8?"),
        ("2001:db8::1/32", "host bits set"),
        ("300.1.1.1", "is not an IPv4 or IPv6 address"),
        ("example.com", "is not an IPv4 or IPv6 address"),
        ("10.0.0.0/33", "is not an IPv4 or IPv6 address"),
        ("", "Enter an IP address"),
        ("fe80::1%eth0", "IPv6 zone"),
    ],
)
def test_malformed_allowed_ips_are_refused_with_a_clear_message(entry, message):
    with pytest.raises(ValidationError) as error:
        normalise_network(entry)
    assert message in " ".join(error.value.messages)


def test_duplicate_allowed_ips_are_refused_even_when_spelled_differently(alice, make_key):
    with pytest.raises(ValidationError) as error:
        make_key(alice, networks=("10.0.0.1", "10.0.0.1/32"))
    assert "only once" in str(error.value.message_dict["allowed_ips"])
    assert not ApiKey.objects.exists()


def test_a_bad_entry_creates_nothing(alice, make_key):
    with pytest.raises(ValidationError):
        make_key(alice, networks=("10.0.0.0/8", "10.0.0.1/8"))
    assert not ApiKey.objects.exists()
    assert not AllowedIp.objects.exists()


def test_allowed_ip_saved_directly_is_normalised(alice, make_key):
    key, _ = make_key(alice)
    entry = AllowedIp.objects.create(key=key, network="2001:DB8::/48")
    assert entry.network == "2001:db8::/48"


# --- status and revocation ------------------------------------------------------------------


def test_status_moves_from_active_to_expired_to_revoked(alice, make_key, today):
    key, _ = make_key(alice, expires_on=today)
    assert key.status() == ApiKey.Status.ACTIVE
    tomorrow = datetime.datetime.combine(
        today + datetime.timedelta(days=1), datetime.time(1), tzinfo=AMSTERDAM
    )
    assert key.status(at=tomorrow) == ApiKey.Status.EXPIRED
    actions.revoke_key(key, actor=alice)
    key.refresh_from_db()
    assert key.status() == ApiKey.Status.REVOKED


def test_revocation_records_who_when_and_why(alice, carol, make_key):
    key, _ = make_key(alice)
    actions.revoke_key(key, actor=carol, reason="Leaked in a ticket")
    key.refresh_from_db()
    assert key.revoked_by == carol
    assert key.revoke_reason == "Leaked in a ticket"
    assert key.revoked_at is not None


def test_revoking_someone_elses_key_needs_a_reason(alice, carol, make_key):
    key, _ = make_key(alice)
    with pytest.raises(ValidationError):
        actions.revoke_key(key, actor=carol, reason="  ")
    key.refresh_from_db()
    assert key.revoked_at is None


def test_a_revoked_key_can_never_be_unrevoked(alice, make_key):
    key, _ = make_key(alice)
    actions.revoke_key(key, actor=alice)
    key.refresh_from_db()
    key.revoked_at = None
    key.revoked_by = None
    with pytest.raises(ValueError, match="revoked key cannot be changed"):
        key.save()


def test_a_revoked_key_cannot_be_edited(alice, make_key):
    key, _ = make_key(alice)
    actions.revoke_key(key, actor=alice)
    with pytest.raises(ValidationError):
        actions.edit_key(
            key,
            actor=alice,
            name="new",
            expires_on=key.expires_on,
            networks=["1.2.3.4"],
            apis=Api.objects.all()[:1],
        )
    key.refresh_from_db()
    assert key.name != "new"


def test_edits_raise_the_revision_so_cached_checks_expire(alice, make_key):
    key, _ = make_key(alice)
    before = key.revision
    actions.edit_key(
        key,
        actor=alice,
        name="renamed",
        expires_on=key.expires_on,
        networks=["127.0.0.1"],
        apis=key.apis.all(),
    )
    key.refresh_from_db()
    assert key.revision == before + 1


def test_a_creation_time_in_the_future_cannot_stretch_the_one_year_limit(alice, make_key):
    future = datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(days=6 * 365)
    with pytest.raises(ValueError, match="future"):
        make_key(alice, at=future, expires_on=future.date())
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    "change",
    [
        {"revoked_at": None},
        {"revoked_by": None, "revoke_reason": ""},
        {"latest_expires_on": datetime.date(2099, 1, 1)},
        {"identifier": "ckid_x"},
    ],
)
def test_bulk_updates_cannot_unrevoke_or_move_the_limit(alice, make_key, change):
    key, _ = make_key(alice)
    actions.revoke_key(key, actor=alice)
    with pytest.raises(ValueError, match=r"only through keys\.actions"):
        ApiKey.objects.filter(pk=key.pk).update(**change)
    key.refresh_from_db()
    assert key.revoked_at is not None


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE keys_apikey SET revoked_at = NULL, revoked_by_id = NULL, revoke_reason = ''",
        "UPDATE keys_apikey SET revoke_reason = 'rewritten'",
        "UPDATE keys_apikey SET latest_expires_on = '2099-01-01', expires_on = '2099-01-01'",
    ],
)
def test_the_database_itself_refuses_raw_sql_that_unrevokes_or_moves_the_limit(
    alice, make_key, statement
):
    from django.db import DatabaseError, connection

    key, _ = make_key(alice)
    actions.revoke_key(key, actor=alice, reason="done")
    with (
        pytest.raises(DatabaseError, match="revocation is final"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(f"{statement} WHERE id = %s", [key.pk])
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoke_reason == "done"


def test_the_database_still_lets_a_live_key_change_its_name(alice, make_key):
    from django.db import connection

    key, _ = make_key(alice)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE keys_apikey SET name = 'renamed' WHERE id = %s", [key.pk])
    key.refresh_from_db()
    assert key.name == "renamed"
