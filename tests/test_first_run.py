"""What a new user meets: `make run` and the README's `adduser` line, run as printed.

`make run` serves on a port of its own (`PORT=`) from a database of its own (DATABASE_URL), in
a clean environment: nothing the test run sets (SECRET_KEY, DEBUG) reaches it. Like any
`make run`, it keeps its development keys in the untracked .dev-secret-key and .dev-audit-key.
"""

import http.client
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest

from tests.servers import REPO, AppServer

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

README = (REPO / "README.md").read_text()
PASSED = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "CI"}


def new_user_env(database_url: str) -> dict[str, str]:
    """What a newcomer's shell holds: no settings at all, only where the database is."""
    env = {key: value for key, value in os.environ.items() if key in PASSED}
    # Unbuffered, so that the order of the output is the order a terminal shows.
    return {**env, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def make_run(server_database_url, tmp_path_factory):
    log = tmp_path_factory.mktemp("make-run") / "make-run.log"
    server = AppServer([], new_user_env(server_database_url), log)
    server.command = ["make", "run", f"PORT={server.port}"]
    server.start(timeout=180)
    yield server
    server.stop()


def the_box(output: str) -> re.Match:
    box = re.search(r"^\+-+\+\n(?:\|.*\|\n)+\+-+\+$", output, re.M)
    assert box, f"no box in the output of make run:\n{output[-3000:]}"
    return box


def log_in(server: AppServer, username: str, password: str) -> tuple[int, str]:
    """Log in over HTTP as a browser would; return the status and the session cookie."""
    _status, headers, body = server.get("/login/")
    token = body.decode().split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    csrf_cookie = headers["Set-Cookie"].split(";")[0]
    form = {"csrfmiddlewaretoken": token, "username": username, "password": password}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(
            "POST",
            "/login/",
            body=urlencode(form),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": csrf_cookie,
            },
        )
        response = connection.getresponse()
        response.read()
        cookies = [value.split(";")[0] for value in response.headers.get_all("Set-Cookie") or []]
        session = next((c for c in cookies if c.startswith("sessionid=")), "")
        return response.status, session
    finally:
        connection.close()


def test_make_run_serves_on_the_port_it_is_given(make_run):
    assert make_run.get("/login/")[0] == 200
    assert f"Starting development server at http://127.0.0.1:{make_run.port}/" in (
        make_run.output()
    )


def test_the_one_time_password_is_boxed_after_migrate_and_before_the_server_talks(make_run):
    output = make_run.output()
    box = the_box(output)
    assert f"Log in at http://127.0.0.1:{make_run.port}/login/" in box.group()
    assert "one-time password:" in box.group()
    assert output.rindex("Applying ") < box.start()
    assert box.end() < output.index("Starting development server")


def test_the_first_admin_logs_in_with_the_one_time_password(make_run):
    password = the_box(make_run.output()).group().split("one-time password:")[1].split()[0]
    assert log_in(make_run, "admin", password)[0] == 302


def test_the_first_admin_reaches_every_page_without_a_second_factor_in_the_try_out(make_run):
    output = make_run.output()
    assert "Second factor required for: no role in this try-out" in output
    password = the_box(output).group().split("one-time password:")[1].split()[0]
    _status, session = log_in(make_run, "admin", password)
    status, _headers, _body = make_run.get("/all-keys/", Cookie=session)
    assert status == 200  # not sent to enrol first (production's default would)


def test_the_readme_adduser_line_works_as_printed(make_run):
    (line,) = [line for line in README.splitlines() if "manage.py adduser" in line]
    created = subprocess.run(
        ["bash", "-c", line],
        cwd=REPO,
        env=new_user_env(make_run.env["DATABASE_URL"]),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr[-2000:]
    username = line.split("adduser ")[1].split()[0]
    password = re.search(r"echo '([^']+)'", line).group(1)
    assert log_in(make_run, username, password)[0] == 302


class Terminal:
    """A command on a pseudo-terminal of its own: what its user would see and type."""

    def __init__(self, command: list[str], env: dict[str, str]):
        self.master, follower = os.openpty()
        self.proc = subprocess.Popen(
            command,
            stdin=follower,
            stdout=follower,
            stderr=follower,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
        os.close(follower)
        self.seen = ""

    def read_until(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            assert time.monotonic() < deadline, f"never saw {text!r}; saw:\n{self.seen}"
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the command ended and closed the terminal
                    assert text in self.seen, f"never saw {text!r}; saw:\n{self.seen}"

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self, timeout: float = 60) -> int:
        """Wait for the command to end; read all it wrote."""
        code = self.proc.wait(timeout=timeout)
        while select.select([self.master], [], [], 0.5)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # closed: nothing more
                break
            if not chunk:
                break
            self.seen += chunk.decode(errors="replace")
        os.close(self.master)
        return code


@pytest.fixture
def terminal():
    """Start a command on a terminal of its own; ended at teardown if still running."""
    started = []

    def start(command: list[str], env: dict[str, str]) -> Terminal:
        started.append(Terminal(command, env))
        return started[-1]

    yield start
    for each in started:
        if each.proc.poll() is None:
            each.proc.kill()
            each.proc.wait(timeout=10)


def test_adduser_on_a_terminal_asks_for_the_email_and_hides_the_password(make_run, terminal):
    terminal = terminal(
        [sys.executable, "manage.py", "adduser", "erin", "--role", "staff", "--password-stdin"],
        {**new_user_env(make_run.env["DATABASE_URL"]), "DEBUG": "1"},
    )
    terminal.read_until("E-mail address")
    terminal.type("not an address\n")
    terminal.read_until("Enter a valid e-mail address")
    terminal.read_until("E-mail address (expiry reminders go there): ")
    terminal.type("erin@example.com\n")
    terminal.read_until("Password (not shown): ")
    terminal.type("Correct-Horse-Battery-9\n")
    assert terminal.finish() == 0, terminal.seen
    assert "Created staff 'erin'." in terminal.seen
    assert "Correct-Horse-Battery-9" not in terminal.seen  # never echoed

    status, session = log_in(make_run, "erin", "Correct-Horse-Battery-9")
    assert status == 302
    profile = make_run.get("/profile/", Cookie=session)[2].decode()
    assert 'value="erin@example.com"' in profile


def test_make_run_on_a_taken_port_says_which_to_pick_before_creating_anyone(tmp_path):
    database = tmp_path / "never.sqlite3"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = run_alone(
            ["make", "run", f"PORT={port}"], new_user_env(f"sqlite:///{database}")
        )
    assert code != 0
    assert "make run PORT=8001" in output
    assert "one-time password" not in output
    assert not database.exists()


def run_alone(command: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run a command in a process group of its own; a server it started dies with it."""
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # it went on serving: stop all it started
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
    return proc.returncode, output
