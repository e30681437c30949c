"""Run docs/deploy.md for real, then use the portal and the API through nginx.

    sudo python3 docs/verify_guide.py run --repository /path/or/url/of/key-portal

ONLY ON A THROWAWAY DEBIAN 12 MACHINE, AS ROOT: it installs packages, creates a PostgreSQL
cluster, a system user, files under /etc, /srv and /var, starts Redis, two gunicorn app servers
and nginx (all on 127.0.0.1), and removes all of it again at the end (`cleanup`), even on failure.

Every `sh` block of the guide runs, in order, in one bash session (`set -euo pipefail`),
except blocks whose first line is `# with systemd`. Between blocks this script checks what the
guide says was checked (see "What was checked" there): the journey through nginx before the
`--netrc-file` call, faults after it, and API calls in a loop during the rolling reload.
Nothing secret is printed: passwords go to files of mode 600 only.
"""

# ruff: noqa: S603, S607 (runs the guide's own shell commands, by design)

import argparse
import contextlib
import datetime
import http.client
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

GUIDE = Path(__file__).resolve().parent / "deploy.md"
HOST = "keys.example.com"
CERT = Path("/etc/ssl/certs/keys.example.com.pem")
NETRC = Path("/root/key-portal.netrc")
OTHER_NETRC = Path("/root/key-portal-other.netrc")
CAROL_PASSWORD = Path("/root/carol.password")
STATE = Path("/root/key-portal.verify.json")  # identifiers and paths, never passwords
APP_LOGS = [Path("/var/log/key-portal/8001.log"), Path("/var/log/key-portal/8002.log")]

CLEANUP = r"""
set +e
nginx -p /tmp/kp-nginx -c /tmp/kp-nginx/nginx.conf -s quit 2>/dev/null
for pid in /var/log/key-portal/8001.pid /var/log/key-portal/8002.pid \
           /run/redis-key-portal/redis-server.pid /tmp/kp-nginx/nginx.pid; do
  [ -f "$pid" ] && kill -TERM "$(cat "$pid")" 2>/dev/null
done
sleep 2
pg_dropcluster 15 keyportal --stop 2>/dev/null
userdel keyportal 2>/dev/null
rm -rf /srv/key-portal /etc/key-portal /etc/redis/redis-key-portal.conf \
  /var/log/redis/redis-server-key-portal.log /run/redis-key-portal \
  /etc/nginx/sites-available/key-portal /etc/nginx/sites-enabled/key-portal \
  /etc/systemd/system/key-portal@.service /usr/local/sbin/key-portal-manage \
  /var/log/key-portal /var/backups/key-portal /var/lib/key-portal /etc/cron.d/key-portal-audit \
  /tmp/kp-nginx \
  /etc/ssl/private/keys.example.com.key /etc/ssl/certs/keys.example.com.pem \
  /root/carol.password /root/key-portal.netrc /root/key-portal-other.netrc \
  /root/key-portal.verify.json
exit 0
"""


# --- the guide as one script ------------------------------------------------------------------


def sh_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", markdown, flags=re.S | re.M)


def build_script(repository: str, me: str) -> str:
    # No `set -x`: it would print the secrets that sourcing /etc/key-portal/env assigns.
    # Each block is shown as written instead, then run.
    parts = ["set -euo pipefail"]
    for block in sh_blocks(GUIDE.read_text()):
        if block.startswith("# with systemd"):
            continue
        parts.append(f"cat <<'__GUIDE_BLOCK__'\n\n$ {block.rstrip()}\n__GUIDE_BLOCK__")
        if "--netrc-file" in block:
            parts.append(f"{me} journey")
        if block.startswith("# without systemd") and "kill -HUP" in block:
            parts.append(f"{me} calls --seconds 25 > /tmp/kp-calls.log 2>&1 & CALLS=$!")
            parts.append("sleep 2")
        parts.append(block.replace("REPOSITORY_URL", shlex.quote(repository)))
        if "--netrc-file" in block:
            parts.append(f"{me} faults")
        if block.startswith("# without systemd") and "kill -HUP" in block:
            parts.append("wait $CALLS; cat /tmp/kp-calls.log")
    return "\n".join(parts) + "\n"


def run(args) -> int:
    if os.geteuid() != 0:
        sys.exit("Run as root, on a throwaway machine.")
    home = Path(tempfile.mkdtemp(prefix="kp-home-"))
    # curl resolves keys.example.com to loopback and trusts the self-signed certificate.
    (home / ".curlrc").write_text(
        f"resolve = {HOST}:443:127.0.0.1\nresolve = {HOST}:80:127.0.0.1\ncacert = {CERT}\n"
    )
    me = f"{shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).resolve()))}"
    script = build_script(args.repository, me)
    env = {**os.environ, "HOME": str(home), "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(["bash", "-c", script], env=env, cwd="/", check=False)
    finally:
        if not args.keep:
            subprocess.run(["bash", "-c", CLEANUP], check=False)
    print("GUIDE RUN", "PASSED" if result.returncode == 0 else f"FAILED ({result.returncode})")
    return result.returncode


# --- HTTPS to nginx as a browser would ---------------------------------------------------------


class Portal:
    """HTTPS to keys.example.com on 127.0.0.1:443, with a cookie jar."""

    def __init__(self):
        self.context = ssl.create_default_context(cafile=str(CERT))
        self.cookies: dict[str, str] = {}

    def request(self, method, path, *, body=None, headers=None, port=443):
        headers = {"Host": HOST, **(headers or {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if port == 443:
            connection = http.client.HTTPSConnection(HOST, 443, context=self.context, timeout=15)
            connection.sock = self.context.wrap_socket(
                socket.create_connection(("127.0.0.1", 443), timeout=15), server_hostname=HOST
            )
        else:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie(header)
            for name, morsel in cookie.items():
                self.cookies[name] = morsel.value
        return response.status, response.headers, data

    def form_post(self, path, fields):
        body = urlencode(fields, doseq=True)
        return self.request(
            "POST",
            path,
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": f"https://{HOST}{path}",
            },
        )


def csrf_token(html: bytes) -> str:
    return re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1).decode()


def basic(identifier, password):
    import base64

    return "Basic " + base64.b64encode(f"{identifier}:{password}".encode()).decode()


def create_key(portal: Portal, name: str, network: str) -> tuple[str, str]:
    status, _, html = portal.request("GET", "/keys/add/")
    assert status == 200, status
    risks = re.search(rb'value="(\d+)" id="[^"]+">\s*<label[^>]*><strong[^>]*>Risks<', html)
    expires = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
    status, _, html = portal.form_post(
        "/keys/add/",
        {
            "csrfmiddlewaretoken": csrf_token(html),
            "name": name,
            "expires_on": expires,
            "allowed_ips": [network],
            "apis": [risks.group(1).decode()],
        },
    )
    assert status == 200, status
    identifier = re.search(rb'id="identifier" type="text" value="(ckid_\w+)"', html)
    password = re.search(rb'id="password" type="text" value="(ckpw_\w+)"', html)
    assert identifier and password, "the created page shows no credentials"
    return identifier.group(1).decode(), password.group(1).decode()


def totp(secret: str) -> str:
    """The RFC 6238 code of `secret` now, as an authenticator app shows it."""
    import base64
    import hashlib
    import hmac
    import struct

    key = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    digest = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = (struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 10**6
    return f"{value:06d}"


def add_authenticator_app(portal: Portal, password: str) -> None:
    """Sign-in security: confirm it's carol, then set up an authenticator app."""
    activate = "/accounts/2fa/totp/activate/"
    status, headers, html = portal.request("GET", activate)
    if status == 302:  # adding a factor first asks for the password again
        confirm = headers["Location"]
        _, _, html = portal.request("GET", confirm)
        fields = {"csrfmiddlewaretoken": csrf_token(html), "password": password}
        status, _, _ = portal.form_post(confirm, fields)
        assert status == 302, status
        status, _, html = portal.request("GET", activate)
    assert status == 200, status
    secret = re.search(rb'id="authenticator_secret" value="([A-Z2-7]+)"', html).group(1)
    fields = {"csrfmiddlewaretoken": csrf_token(html), "code": totp(secret.decode())}
    status, _, _ = portal.form_post(activate, fields)
    assert status == 302, status


def check(condition: bool, what: str) -> None:
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        raise SystemExit(1)


def api(path, auth, headers=None):
    return Portal().request("GET", path, headers={"Authorization": auth, **(headers or {})})


def journey(_args) -> int:
    portal = Portal()
    status, _, html = portal.request("GET", "/login/")
    check(status == 200, "GET /login/ through nginx")
    password = CAROL_PASSWORD.read_text().strip()
    status, headers, _ = portal.form_post(
        "/login/",
        {"csrfmiddlewaretoken": csrf_token(html), "username": "carol", "password": password},
    )
    check(status == 302 and headers["Location"] == "/keys/", "carol logs in (CSRF over https)")
    status, headers, _ = portal.request("GET", "/keys/")
    if status == 302 and headers["Location"] == "/accounts/2fa/":
        add_authenticator_app(portal, password)  # MFA_REQUIRED_ROLES: admins need a factor
        check(portal.request("GET", "/keys/")[0] == 200, "carol adds an authenticator app")
    identifier, key_password = create_key(portal, "Loopback check", "127.0.0.1")
    other_id, other_password = create_key(portal, "Only 203.0.113.9", "203.0.113.9")
    check(True, f"created keys {identifier} and {other_id} through the portal")
    old_umask = os.umask(0o077)
    NETRC.write_text(f"machine {HOST}\nlogin {identifier}\npassword {key_password}\n")
    # A well-formed password of another key: wrong for this one, so it costs an Argon2 check.
    OTHER_NETRC.write_text(f"machine {HOST}\nlogin {other_id}\npassword {other_password}\n")
    os.umask(old_umask)
    STATE.write_text(json.dumps({"identifier": identifier}))

    auth = basic(identifier, key_password)
    status, _, body = api("/api/v1/whoami", auth)
    check(status == 200 and json.loads(body)["identifier"] == identifier, "whoami: 200")
    for _ in range(10):
        status, _, _ = api("/api/v1/risks", auth)
        check(status == 200, "risks: 200")
    served = [log.read_text().count("/api/v1/") for log in APP_LOGS]
    check(all(n > 0 for n in served), f"API calls reached both app servers {served}")
    status, _, _ = api("/api/v1/risks", auth, {"X-Forwarded-For": "203.0.113.9"})
    check(status == 200, "forged X-Forwarded-For is overwritten by nginx: still 200")
    other = basic(other_id, other_password)
    status, _, _ = api("/api/v1/risks", other, {"X-Forwarded-For": "203.0.113.9"})
    check(status == 401, "key allowing only 203.0.113.9, with that forged header: 401")
    flood_limits(auth)
    return 0


def burst(method: str, path: str, count: int, **kwargs) -> list[tuple[int, str]]:
    """`count` requests at once (10 connections in parallel); (status, Content-Type) each."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_n):
        status, headers, _ = Portal().request(method, path, **kwargs)
        return status, headers.get("Content-Type", "")

    with ThreadPoolExecutor(max_workers=10) as pool:
        return list(pool.map(one, range(count)))


def flood_limits(auth: str) -> None:
    """nginx's limit_req/limit_conn: a burst gets 429, a paced caller never does."""
    # No credentials: the app answers 401 without counting a failure, so its own throttles
    # stay out of this and only nginx can answer 429.
    answers = burst("GET", "/api/v1/whoami", 150)
    limited = [kind for status, kind in answers if status == 429]
    check(
        limited and all(kind == "application/problem+json" for kind in limited),
        f"API burst of 150: {len(limited)} x 429 problem+json from nginx, "
        f"{sum(status == 401 for status, _ in answers)} x 401 from the app",
    )
    time.sleep(3)  # the burst allowance refills (40 at 20/s)
    statuses = []
    for _ in range(40):
        statuses.append(api("/api/v1/risks", auth)[0])
        time.sleep(0.1)
    check(statuses == [200] * 40, f"paced caller, 10 calls/s for 4 s: {set(statuses)}")
    for path in ("/login/", "/admin/login/"):
        # Without a CSRF token: the app refuses with 403 before any log-in throttle counts.
        answers = burst("POST", path, 30, body="username=carol&password=x")
        limited = sum(status == 429 for status, _ in answers)
        check(limited > 0, f"POST {path} burst of 30: {limited} x 429 from nginx")
        status = Portal().request("GET", path)[0]
        check(status in (200, 302), f"GET {path} right after: {status} (the form is not limited)")


def readyz():
    return Portal().request("GET", "/readyz")[0]


def wait_until(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # not up yet
            if predicate():
                return
        time.sleep(0.5)
    check(False, what)


def netrc_credentials(path=NETRC) -> tuple[str, str]:
    text = path.read_text().split()
    return text[text.index("login") + 1], text[text.index("password") + 1]


def netrc_auth():
    return basic(*netrc_credentials())


def sh(command: str) -> None:
    subprocess.run(["bash", "-c", command], check=True, cwd="/srv/key-portal")


def faults(_args) -> int:
    auth = netrc_auth()
    start_8001 = (
        "BIND=127.0.0.1:8001 runuser -u keyportal -- sh -c 'set -a; . /etc/key-portal/env; "
        "set +a; exec .venv/bin/gunicorn --config gunicorn.conf.py --daemon "
        "--pid /var/log/key-portal/8001.pid --error-logfile /var/log/key-portal/8001.log "
        "--access-logfile /var/log/key-portal/8001.log portal.wsgi'"
    )
    sh('kill -TERM "$(cat /var/log/key-portal/8001.pid)"')
    time.sleep(3)
    statuses = [api("/api/v1/risks", auth)[0] for _ in range(10)]
    check(statuses == [200] * 10, f"app server 8001 stopped: API through 8002 {set(statuses)}")
    sh(start_8001)
    wait_until(lambda: readyz() == 200, "8001 back")

    sh('kill -TERM "$(cat /run/redis-key-portal/redis-server.pid)"')
    time.sleep(1)
    check(api("/api/v1/risks", auth)[0] == 200, "Redis down: right password still 200")
    wrong = basic(netrc_credentials()[0], netrc_credentials(OTHER_NETRC)[1])
    check(api("/api/v1/risks", wrong)[0] == 401, "Redis down: wrong password 401")
    check(readyz() == 503, "Redis down: /readyz 503")
    sh(
        "install -d -o redis -g redis /run/redis-key-portal && runuser -u redis -- "
        "redis-server /etc/redis/redis-key-portal.conf --daemonize yes"
    )
    wait_until(lambda: readyz() == 200, "Redis back: /readyz 200")

    sh("pg_ctlcluster 15 keyportal stop")
    status, headers, body = api("/api/v1/risks", auth)
    check(
        status == 503
        and headers["Content-Type"] == "application/problem+json"
        and headers["Retry-After"]
        and b"Traceback" not in body,
        f"PostgreSQL down: API {status} {headers['Content-Type']}",
    )
    sh("pg_ctlcluster 15 keyportal start")
    wait_until(lambda: readyz() == 200, "PostgreSQL back: /readyz 200")
    check(api("/api/v1/risks", auth)[0] == 200, "PostgreSQL back: API 200")
    return 0


def calls(args) -> int:
    auth = netrc_auth()
    deadline = time.monotonic() + args.seconds
    results: dict[int, int] = {}
    while time.monotonic() < deadline:
        try:
            status = api("/api/v1/risks", auth)[0]
        except OSError:
            status = 0
        results[status] = results.get(status, 0) + 1
        time.sleep(0.05)
    check(set(results) == {200}, f"API calls during the rolling reload: {results}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run")
    run_parser.add_argument("--repository", required=True)
    run_parser.add_argument("--keep", action="store_true", help="leave everything running")
    commands.add_parser("journey")
    commands.add_parser("faults")
    calls_parser = commands.add_parser("calls")
    calls_parser.add_argument("--seconds", type=float, default=20)
    commands.add_parser("cleanup")
    args = parser.parse_args()
    if args.command == "cleanup":
        return subprocess.run(["bash", "-c", CLEANUP], check=False).returncode
    return {"run": run, "journey": journey, "faults": faults, "calls": calls}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
