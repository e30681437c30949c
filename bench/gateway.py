"""Benchmark the gateway check: real nginx, wrk on loopback, the portal in gunicorn.

    make bench-gateway     # or: .venv/bin/python bench/gateway.py [--rounds 3 --seconds 4]

One nginx (one worker) serves a fast upstream (an nginx `return 200`) and, in front of it:
(a) unprotected, a plain proxy_pass; (b) docs/gateways.md's nginx block, verbatim but for its
ports: auth_request to the portal's /gateway/verify, a warm key; (c) nginx `auth_basic` with
a bcrypt htpasswd (`htpasswd -B`), what operators use today; (d) refusals through (b): the
same key asking for an API it is not granted (403, after the whole check). Then wrk straight
at the portal: /gateway/verify, warm, against the same server's /healthz. The portal is
bench/api_auth.py's gunicorn (2 sync workers, production settings, SQLite or DATABASE_URL,
CACHE_URL) with bench/counters.py, so a warm check's database queries and cache calls are
read from its X-Bench-* headers. Rounds alternate over the cases; then (a) and (b) again at
half of (b)'s throughput (wrk's per-connection delay) for the latency p99 each adds.
"""

import argparse
import base64
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.api_auth import backends, server_env, start_gunicorn  # noqa: E402

CONNECTIONS = 8
CLIENT = "127.0.0.1"  # wrk's address, as nginx sees it: the key allows it


def prepare(env: dict[str, str]) -> tuple[str, str]:
    """Migrate; make the bench key for the `risks` API from 127.0.0.1."""
    import os

    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection

    from keys import actions
    from keys.models import Api, latest_expiry_for, local_date

    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("bench")
    owner.groups.add(Group.objects.get(name="staff"))
    key, password = actions.create_key(
        owner=owner,
        name="bench",
        expires_on=latest_expiry_for(local_date()),
        networks=[CLIENT],
        apis=[Api.objects.get(slug="risks")],
    )
    connection.close()
    return key.identifier, password


def nginx_conf(workdir: Path, portal: int, ports: dict[str, int], htpasswd: Path) -> str:
    # The guide's own block (read by the tests too); imported once Django's settings are set.
    from tests.gateway_servers import config_block

    upstream = f"127.0.0.1:{ports['upstream']}"
    guarded = config_block("nginx").replace("listen 8080;", f"listen 127.0.0.1:{ports['b']};")
    guarded = guarded.replace("127.0.0.1:8000", f"127.0.0.1:{portal}")
    guarded = guarded.replace("127.0.0.1:9000", upstream)
    temp = "\n".join(
        f"    {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    import os

    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
worker_processes 1;
pid {workdir / "nginx.pid"};
error_log {workdir / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp}
    server {{
        listen {upstream};
        location / {{ return 200 "upstream says hello\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{ports["a"]};
        location /api/ {{ proxy_pass http://{upstream}; }}
    }}
    server {{
        listen 127.0.0.1:{ports["c"]};
        location /api/ {{
            auth_basic "bench";
            auth_basic_user_file {htpasswd};
            proxy_set_header Authorization "";
            proxy_pass http://{upstream};
        }}
    }}
{guarded}}}
"""


def wrk(url: str, seconds: float, headers: dict[str, str], delay_ms: float = 0) -> dict:
    """Run wrk; return requests/s, p99 ms and non-2xx/3xx count."""
    duration = f"{max(1, round(seconds))}s"
    command = ["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", duration, "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if delay_ms:
        script = Path(tempfile.gettempdir()) / f"wrk-delay-{delay_ms:.3f}.lua"
        script.write_text(f"function delay() return {delay_ms:.3f} end\n")
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", output)
    scale = {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    bad = int(bad.group(1)) if bad else 0
    return {"rate": rate, "p99": float(p99.group(1)) * scale, "bad": bad}


def counted(port: int, headers: dict[str, str], path: str) -> tuple[int, int, int]:
    """(status, database queries, cache calls) of one request, from bench/counters.py."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers={"Host": "127.0.0.1", **headers})
    response = connection.getresponse()
    response.read()
    connection.close()
    return (
        response.status,
        int(response.getheader("X-Bench-Queries", "-1")),
        int(response.getheader("X-Bench-Cache", "-1")),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="per case and round")
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "htpasswd"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            sys.exit(f"{tool} is not installed (Debian: nginx, wrk, apache2-utils)")

    with tempfile.TemporaryDirectory(prefix="keyportal-bench-gateway-") as tmp:
        workdir = Path(tmp)
        env = server_env(workdir / "bench.sqlite3")
        identifier, password = prepare(env)
        basic = "Basic " + base64.b64encode(f"{identifier}:{password}".encode()).decode()
        htpasswd = workdir / "htpasswd"
        subprocess.run(
            ["htpasswd", "-B", "-b", "-c", str(htpasswd), identifier, password],
            check=True,
            capture_output=True,
        )
        proc, portal = start_gunicorn(env, workdir)
        from tests.servers import free_port

        ports = {name: free_port() for name in ("upstream", "a", "b", "c")}
        (workdir / "nginx.conf").write_text(nginx_conf(workdir, portal, ports, htpasswd))
        nginx = subprocess.Popen(
            [shutil.which("nginx") or "/usr/sbin/nginx", "-p", tmp, "-c", "nginx.conf",
             "-e", "stderr"],
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            results = run(args, ports, portal, basic)
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
            proc.terminate()
            proc.wait(timeout=30)
    ok = report(results, backends(env), args)
    sys.exit(0 if ok else 1)


def run(args, ports: dict[str, int], portal: int, basic: str) -> dict:
    import time

    time.sleep(1)  # nginx binds
    check_headers = {
        "Authorization": basic,
        "X-Original-Method": "GET",
        "X-Original-URI": "/api/v1/risks/",
        "X-Forwarded-For": CLIENT,
        "Host": "127.0.0.1",
    }
    base = "http://127.0.0.1:{}/api/v1/{}/"
    cases = {
        "(a) nginx -> upstream, unprotected": (base.format(ports["a"], "risks"), {}),
        "(b) nginx -> auth_request -> Key Portal -> upstream, warm key": (
            base.format(ports["b"], "risks"),
            {"Authorization": basic},
        ),
        "(c) nginx auth_basic, bcrypt htpasswd -> upstream": (
            base.format(ports["c"], "risks"),
            {"Authorization": basic},
        ),
        "(d) refusals through (b): API not granted, 403": (
            base.format(ports["b"], "controls"),
            {"Authorization": basic},
        ),
        "/gateway/verify, warm, direct": (
            f"http://127.0.0.1:{portal}/gateway/verify",
            check_headers,
        ),
        "/healthz, same server": (
            f"http://127.0.0.1:{portal}/healthz",
            {"Host": "127.0.0.1"},
        ),
    }
    queries = [counted(portal, check_headers, "/gateway/verify") for _ in range(5)][-1]
    for url, headers in cases.values():  # warm: connections, the verification cache
        wrk(url, 1, headers)
    totals = {label: [] for label in cases}
    labels = list(cases)
    for number in range(args.rounds):
        for label in labels[number % len(labels) :] + labels[: number % len(labels)]:
            url, headers = cases[label]
            totals[label].append(wrk(url, args.seconds, headers))
    rate = {label: sum(r["rate"] for r in runs) / len(runs) for label, runs in totals.items()}
    bad = {label: sum(r["bad"] for r in runs) for label, runs in totals.items()}

    # Half load: (b)'s throughput halved, offered by the same connections to (a) and (b).
    b_label, a_label = labels[1], labels[0]
    delay_ms = CONNECTIONS / (rate[b_label] / 2) * 1000
    half = {a_label: [], b_label: []}
    for _ in range(args.rounds):
        for label in (a_label, b_label):
            url, headers = cases[label]
            half[label].append(wrk(url, args.seconds, headers, delay_ms=delay_ms)["p99"])
    return {
        "rate": rate,
        "bad": bad,
        "half_p99": {label: sorted(values)[len(values) // 2] for label, values in half.items()},
        "half_rate": rate[b_label] / 2,
        "queries": queries,
    }


def report(results: dict, deployment: str, args) -> bool:
    rate, labels = results["rate"], list(results["rate"])
    print(
        f"\nnginx 1 worker, wrk 2 threads x {CONNECTIONS} connections; gunicorn 2 sync workers, "
        f"{deployment}; {args.rounds} alternating rounds of {args.seconds:g} s per case\n"
    )
    print("| case | requests/s | non-2xx |")
    print("| --- | ---: | ---: |")
    for label in labels:
        print(f"| {label} | {rate[label]:,.0f} | {results['bad'][label]} |")
    a, b, c = (rate[labels[i]] for i in range(3))
    verify, health = rate[labels[4]], rate[labels[5]]
    half = results["half_p99"]
    added = half[labels[1]] - half[labels[0]]
    status, queries, cache = results["queries"]
    print(
        f"\n(b)/(a) = {b / a:.2f}   (c)/(a) = {c / a:.2f}   /gateway/verify / /healthz = "
        f"{verify / health:.2f}\np99 at half load ({results['half_rate']:,.0f} requests/s): "
        f"(a) {half[labels[0]]:.2f} ms, (b) {half[labels[1]]:.2f} ms, added {added:.2f} ms\n"
        f"warm check: status {status}, {queries} database queries, {cache} cache calls\n"
    )
    checks = [
        ("(b) >= 0.5x (a)", b / a >= 0.5),
        ("/gateway/verify >= 1.0x /healthz", verify / health >= 1.0),
        ("added p99 of (b) over (a) at half load <= 2 ms", added <= 2.0),
        ("warm check: one database query", queries == 1),
        ("warm check: no cache round trip", cache == 0),
        ("refusals refused, the rest answered 200",
         results["bad"][labels[3]] > 0 and all(
             results["bad"][label] == 0 for label in labels if label != labels[3])),
    ]  # fmt: skip
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")
    return all(ok for _label, ok in checks)


if __name__ == "__main__":
    main()
