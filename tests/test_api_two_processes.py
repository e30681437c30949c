"""Two server processes, one database: a change made through one counts on the very next
request through the other, although the other has the key's verification cached.

Each server is a real gunicorn (the project's gunicorn.conf.py) with its own local-memory
cache, as two app servers would have; they share one SQLite file. The keys are made, edited
and revoked in the portal pages of server A, and called with HTTP Basic on server B.
"""

import base64
import datetime
import http.cookiejar
import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser

import pytest

from tests.servers import REPO, free_port, manage, manage_env, stop_process, wait_for

PORTAL_PASSWORD = "alice-two-process-pw"


class Inputs(HTMLParser):
    """The <input> elements of a page: the value of each by id, and all of them."""

    def __init__(self, html: str):
        super().__init__()
        self.inputs: list[dict[str, str]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "input":
            self.inputs.append({name: value or "" for name, value in attrs})

    def value(self, **match) -> str:
        for element in self.inputs:
            if all(element.get(name) == wanted for name, wanted in match.items()):
                return element.get("value", "")
        raise AssertionError(f"no input {match}")


class Browser:
    """A person in the portal of one server: cookies, CSRF tokens, forms."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as response:
            return response.read().decode()

    def submit(self, path: str, fields: list[tuple[str, str]]) -> str:
        """GET the form at `path` and POST `fields` to it with its CSRF token."""
        token = Inputs(self.get(path)).value(name="csrfmiddlewaretoken")
        body = urllib.parse.urlencode([("csrfmiddlewaretoken", token), *fields]).encode()
        with self.opener.open(self.base + path, data=body, timeout=10) as response:
            return response.read().decode()


def api_status(base: str, path: str, identifier: str, password: str) -> int:
    """What `curl -u IDENTIFIER:PASSWORD base+path` would get."""
    credentials = base64.b64encode(f"{identifier}:{password}".encode()).decode()
    request = urllib.request.Request(base + path, headers={"Authorization": f"Basic {credentials}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def unauthenticated_status(base: str) -> int:
    try:
        urllib.request.urlopen(base + "/api/v1/whoami", timeout=2)
    except urllib.error.HTTPError as error:
        return error.code
    return 200


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    """Migrate a fresh SQLite file, add Alice (staff) and Carol (admin), start servers A and
    B on it."""
    directory = tmp_path_factory.mktemp("two-processes")
    env = manage_env(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=f"sqlite:///{directory / 'portal.sqlite3'}",
        LOG_LEVEL="WARNING",
        WORKERS="1",
    )
    migrated = manage("migrate", "--noinput", env=env)
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    for username, role in (("alice", "staff"), ("carol", "admin")):
        adduser = subprocess.run(
            [sys.executable, "manage.py", "adduser", username, "--role", role, "--password-stdin"],
            input=PORTAL_PASSWORD + "\n",
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert adduser.returncode == 0, adduser.stderr[-2000:]
    catalogue = manage(
        "shell", "--no-imports", "-c", "import json; from keys.models import Api; "
        "print(json.dumps(dict(Api.objects.values_list('slug', 'pk'))))",
        env=env,
    )  # fmt: skip
    servers, procs = [], []
    try:
        for name in ("a", "b"):
            port = free_port()
            log = (directory / f"server-{name}.log").open("wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "portal.wsgi"],
                env={**env, "BIND": f"127.0.0.1:{port}"},
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            procs.append(proc)
            base = f"http://127.0.0.1:{port}"
            wait_for(
                lambda base=base: unauthenticated_status(base) == 401,
                timeout=30,
                what=f"server {name}",
                proc=proc,
            )
            servers.append(base)
        yield {"a": servers[0], "b": servers[1], "apis": json.loads(catalogue.stdout)}
    finally:
        for proc in procs:
            stop_process(proc)


@pytest.fixture
def alice_on_a(portal):
    browser = Browser(portal["a"])
    browser.submit("/login/", [("username", "alice"), ("password", PORTAL_PASSWORD)])
    return browser


def create_key(browser: Browser, apis, name: str) -> tuple[str, str]:
    """Add a key in the portal; return the Identifier and Password the page shows once."""
    expires_on = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
    page = Inputs(
        browser.submit(
            "/keys/add/",
            [
                ("name", name),
                ("expires_on", expires_on),
                ("allowed_ips", "127.0.0.1"),
                *(("apis", str(pk)) for pk in apis),
            ],
        )
    )
    return page.value(id="identifier"), page.value(id="password")


def test_a_revocation_through_one_server_counts_on_the_next_call_to_the_other(portal, alice_on_a):
    a, b = portal["a"], portal["b"]
    identifier, password = create_key(alice_on_a, [portal["apis"]["risks"]], "Two servers")
    for _ in range(3):  # B has verified the password and cached that
        assert api_status(b, "/api/v1/risks/", identifier, password) == 200

    alice_on_a.submit(f"/keys/{identifier}/revoke/", [("reason", "")])

    assert api_status(b, "/api/v1/risks/", identifier, password) == 401
    assert api_status(a, "/api/v1/risks/", identifier, password) == 401

    refusals = alice_on_a.get(f"/keys/{identifier}/")  # B's refusal, shown by A
    assert "The key is revoked." in refusals


def test_an_edit_through_one_server_counts_on_the_next_call_to_the_other(portal, alice_on_a):
    b, apis = portal["b"], portal["apis"]
    identifier, password = create_key(alice_on_a, [apis["risks"], apis["controls"]], "Edited")
    assert api_status(b, "/api/v1/controls/", identifier, password) == 200

    expires_on = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
    alice_on_a.submit(
        f"/keys/{identifier}/edit/",
        [
            ("name", "Edited"),
            ("expires_on", expires_on),
            ("allowed_ips", "127.0.0.1"),
            ("apis", str(apis["risks"])),
        ],
    )

    assert api_status(b, "/api/v1/controls/", identifier, password) == 403
    assert api_status(b, "/api/v1/risks/", identifier, password) == 200


def test_a_regenerated_password_counts_on_the_other_server_at_once(portal, alice_on_a):
    b = portal["b"]
    identifier, old = create_key(alice_on_a, [portal["apis"]["risks"]], "Regenerated")
    assert api_status(b, "/api/v1/risks/", identifier, old) == 200  # cached on B

    page = Inputs(alice_on_a.submit(f"/keys/{identifier}/regenerate/", [("overlap", "none")]))
    new = page.value(id="password")

    assert api_status(b, "/api/v1/risks/", identifier, old) == 401
    assert api_status(b, "/api/v1/risks/", identifier, new) == 200


def test_a_renewal_without_overlap_revokes_the_old_key_on_the_other_server_at_once(
    portal, alice_on_a
):
    b = portal["b"]
    identifier, password = create_key(alice_on_a, [portal["apis"]["risks"]], "Renewed")
    assert api_status(b, "/api/v1/risks/", identifier, password) == 200
    expires_on = (datetime.date.today() + datetime.timedelta(days=60)).isoformat()
    page = Inputs(
        alice_on_a.submit(
            f"/keys/{identifier}/renew/", [("expires_on", expires_on), ("overlap_days", "0")]
        )
    )
    assert api_status(b, "/api/v1/risks/", identifier, password) == 401
    new_identifier, new_password = page.value(id="identifier"), page.value(id="password")
    assert api_status(b, "/api/v1/risks/", new_identifier, new_password) == 200


def test_a_self_rotation_overlap_ends_on_every_server_at_the_same_moment(portal, alice_on_a):
    a, b = portal["a"], portal["b"]
    expires_on = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
    page = Inputs(
        alice_on_a.submit(
            "/keys/add/",
            [
                ("name", "Robot"),
                ("expires_on", expires_on),
                ("allowed_ips", "127.0.0.1"),
                ("apis", str(portal["apis"]["risks"])),
                ("may_rotate_itself", "on"),
            ],
        )
    )
    identifier, old = page.value(id="identifier"), page.value(id="password")
    for server in (a, b):  # both have the old password cached
        assert api_status(server, "/api/v1/risks/", identifier, old) == 200

    credentials = base64.b64encode(f"{identifier}:{old}".encode()).decode()
    request = urllib.request.Request(
        a + "/api/v1/self/rotate",
        data=json.dumps({"overlap_seconds": 2}).encode(),
        headers={"Authorization": f"Basic {credentials}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        rotated = json.loads(response.read())
    until = datetime.datetime.fromisoformat(rotated["previous_password_valid_until"])

    if datetime.datetime.now(datetime.UTC) < until - datetime.timedelta(seconds=0.5):
        assert api_status(b, "/api/v1/risks/", identifier, old) == 200  # the overlap runs
    wait_for(
        lambda: datetime.datetime.now(datetime.UTC) > until,
        timeout=5,
        what="the end of the overlap",
    )
    for server in (a, b):
        assert api_status(server, "/api/v1/risks/", identifier, old) == 401
        assert api_status(server, "/api/v1/risks/", identifier, rotated["password"]) == 200


def test_keys_revoked_in_bulk_through_one_server_are_refused_on_the_next_call_to_the_other(
    portal, alice_on_a
):
    a, b = portal["a"], portal["b"]
    made = [create_key(alice_on_a, [portal["apis"]["risks"]], f"Incident {n}") for n in (1, 2)]
    for identifier, password in made:  # B has verified both passwords and cached that
        assert api_status(b, "/api/v1/risks/", identifier, password) == 200
    carol = Browser(a)
    carol.submit("/login/", [("username", "carol"), ("password", PORTAL_PASSWORD)])

    path = "/all-keys/revoke/?owner=alice&q=Incident"
    preview = Inputs(carol.get(path))  # the dry run: its snapshot of the keys shown
    fields = [
        ("csrfmiddlewaretoken", preview.value(name="csrfmiddlewaretoken")),
        ("shown", preview.value(name="shown")),
        ("reason", "Incident INC-3"),
    ]
    body = urllib.parse.urlencode(fields).encode()
    with carol.opener.open(a + path, data=body, timeout=10) as response:
        assert "2 keys revoked." in response.read().decode()

    for identifier, password in made:
        assert api_status(b, "/api/v1/risks/", identifier, password) == 401
        assert api_status(a, "/api/v1/risks/", identifier, password) == 401
