"""adduser and ensure_admin: users with roles, passwords never on the command line or output."""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command


def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def stdin(monkeypatch):
    def _stdin(text):
        monkeypatch.setattr("sys.stdin", io.StringIO(text))

    return _stdin


@pytest.mark.parametrize("role", ["staff", "admin", "auditor"])
def test_adduser_creates_a_user_with_the_role(db, stdin, role):
    stdin("Correct-Horse-Battery-9\n")
    output = run(
        "adduser", "erin", "--role", role, "--email", "erin@example.com", "--password-stdin"
    )
    user = get_user_model().objects.get(username="erin")
    assert list(user.groups.values_list("name", flat=True)) == [role]
    assert user.email == "erin@example.com"
    assert user.check_password("Correct-Horse-Battery-9")
    assert "Correct-Horse-Battery-9" not in output


def test_adduser_without_a_terminal_asks_nothing_and_says_no_reminder_will_reach_them(db, stdin):
    stdin("Correct-Horse-Battery-9\n")
    out, err = io.StringIO(), io.StringIO()
    call_command("adduser", "erin", "--role", "staff", "--password-stdin", stdout=out, stderr=err)
    assert "E-mail address" not in out.getvalue()
    assert "'erin' has no e-mail address, so no expiry reminder reaches them" in err.getvalue()
    assert get_user_model().objects.get(username="erin").email == ""


def test_adduser_refuses_a_malformed_email_and_creates_nothing(db, stdin):
    stdin("Correct-Horse-Battery-9\n")
    with pytest.raises(CommandError, match="Enter a valid email address"):
        run("adduser", "erin", "--role", "staff", "--email", "erin", "--password-stdin")
    assert not get_user_model().objects.filter(username="erin").exists()


def test_adduser_gives_roles_their_permissions(db, stdin):
    stdin("Correct-Horse-Battery-9\n")
    run("adduser", "dora", "--role", "auditor", "--password-stdin")
    dora = get_user_model().objects.get(username="dora")
    assert dora.has_perm("keys.view_audit")
    assert not dora.has_perm("keys.manage_own_keys")
    assert not dora.has_perm("keys.revoke_any_key")


def test_adduser_refuses_a_weak_password_and_creates_nothing(db, stdin):
    stdin("123\n")
    with pytest.raises(CommandError, match="Password refused"):
        run("adduser", "erin", "--role", "staff", "--password-stdin")
    assert not get_user_model().objects.filter(username="erin").exists()


def test_adduser_refuses_an_existing_name(alice, stdin):
    stdin("Correct-Horse-Battery-9\n")
    with pytest.raises(CommandError, match="already exists"):
        run("adduser", "alice", "--role", "staff", "--password-stdin")


def test_adduser_refuses_an_unknown_role(db, stdin):
    stdin("Correct-Horse-Battery-9\n")
    with pytest.raises(CommandError):
        run("adduser", "erin", "--role", "root", "--password-stdin")


def test_ensure_admin_creates_the_first_admin_once_with_a_one_time_password(db):
    output = run("ensure_admin")
    admin = get_user_model().objects.get()
    password = output.split("one-time password:")[1].split()[0]
    assert admin.check_password(password)
    assert admin.groups.filter(name="admin").exists() and admin.is_superuser
    assert "created" not in run("ensure_admin")  # second run: nothing new, no password
    assert get_user_model().objects.count() == 1


@pytest.mark.parametrize(
    ("username", "says"),
    [
        ("\u0430lice", "may not mix alphabets (Cyrillic, Latin)"),
        ("alice\nroot", "Enter a valid username"),
        ("bob\u202e", "Enter a valid username"),
    ],
    ids=["cyrillic a", "newline", "right-to-left override"],
)
def test_adduser_refuses_a_name_that_looks_like_another_or_breaks_lines(db, stdin, username, says):
    stdin("Correct-Horse-Battery-9\n")
    with pytest.raises(CommandError, match=re.escape(says)):
        run("adduser", username, "--role", "staff", "--password-stdin")
    assert not get_user_model().objects.exists()


@pytest.mark.parametrize("username", ["émile", "Ωμέγα", "山田たろう", "user.name+tag@example"])
def test_adduser_accepts_names_written_in_one_alphabet(db, stdin, username):
    stdin("Correct-Horse-Battery-9\n")
    run("adduser", username, "--role", "staff", "--password-stdin")
    assert get_user_model().objects.get().username == username
