"""Benchmark a valid API caller's latency while 200 connections flood the server.

    make bench-flood      # or: .venv/bin/python bench/flood.py [--seconds 10 --connections 200]

For each server set-up (gunicorn sync workers, gunicorn gthread workers; each directly and
behind a throwaway nginx configured from docs/deploy.md's site, limits included) and each
flood, a paced valid caller (20 calls/s, one connection per call, `whoami` with a warm
verification cache) measures p50/p95/p99 and errors, while a separate client process keeps
N connections busy:

- wrong passwords: well-formed credentials of the real key with a wrong password (each one
  costs the server an Argon2 verification), from N loopback addresses (127.0.1.x), then all
  from one address (127.0.0.2), which nginx's per-address limits can see;
- bad checksums: a password whose checksum fails (refused before any query);
- slowloris: each connection sends its request headers one byte per second, never finishing.

The valid caller connects from 127.0.0.3. The key's allowlist is 127.0.0.0/16, so every
flooder is "inside" it (the worst case: an attacker behind the same network). The app's own
throttles are lifted, as if the flood came from more addresses and keys than they count, so
what is measured is what the server set-up itself absorbs. SQLite and local-memory cache,
like `make bench`; plain HTTP to nginx (no TLS), so its cost is proxying, not handshakes.
Client and server share the machine: the table shows both CPU loads.
"""

import argparse
import asyncio
import base64
import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.api_auth import cpu_seconds, percentile, server_env, worker_pids  # noqa: E402

GUIDE = REPO / "docs" / "deploy.md"
VALID_SOURCE = "127.0.0.3"
ONE_SOURCE = "127.0.0.2"
CALLS_PER_SECOND = 20
CALL_TIMEOUT = 5.0
FLOODS = {
    "none": "no flood",
    "wrong": "wrong passwords, {n} addresses",
    "wrong1": "wrong passwords, 1 address",
    "checksum": "bad checksums, {n} addresses",
    "slowloris": "slowloris, {n} addresses",
}


# --- set-up ------------------------------------------------------------------------------------


def prepare_database(env: dict[str, str]) -> dict[str, str]:
    """Migrate and create the bench key (allowlist 127.0.0.0/16, the risks API)."""
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection

    from keys import actions, tokens
    from keys.models import Api, latest_expiry_for, local_date

    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("bench")
    owner.groups.add(Group.objects.get(name="staff"))
    key, password = actions.create_key(
        owner=owner,
        name="bench",
        expires_on=latest_expiry_for(local_date()),
        networks=["127.0.0.0/16"],
        apis=[Api.objects.get(slug="risks")],
    )
    connection.close()
    typo = password[:-1] + ("A" if password[-1] != "A" else "B")
    return {
        "good": basic(key.identifier, password),
        "wrong": basic(key.identifier, tokens.generate_password()),
        "checksum": basic(key.identifier, typo),
    }


def basic(identifier: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{identifier}:{password}".encode()).decode()


def listening_socket() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    return listener


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env, workdir: Path, worker_class: str, workers: int, threads: int):
    listener = listening_socket()
    port = listener.getsockname()[1]
    log = (workdir / f"gunicorn-{worker_class}.log").open("wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "portal.wsgi"),
            *("--workers", str(workers), "--worker-class", worker_class),
            *("--threads", str(threads), "--timeout", "30", "--max-requests", "0"),
            *("--bind", f"fd://{listener.fileno()}"),
        ],
        env=env,
        cwd=workdir,  # not the repository: this run sets the worker class itself
        pass_fds=[listener.fileno()],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    listener.close()
    wait_until_up(proc, port, lambda: len(worker_pids(proc.pid)) == workers, "gunicorn")
    return proc, port


def guide_site(upstream_port: int, listen_port: int) -> str:
    """docs/deploy.md's nginx site, on plain HTTP, in front of one gunicorn."""
    guide = GUIDE.read_text()
    site = re.search(r"sites-available/key-portal <<'EOF'\n(.*?)\nEOF\n", guide, re.S).group(1)
    site = re.sub(
        r"(\n\s*server 127\.0\.0\.1:\d+[^\n]*;)+", f"\n    server 127.0.0.1:{upstream_port};", site
    )
    # Only the server that proxies: the redirect and catch-all servers have no part in this.
    site = re.sub(
        r"\nserver \{[^{}]*\}\n",
        lambda m: "\n" if "proxy" not in m.group() and "location" not in m.group() else m.group(),
        site,
    )
    site = re.sub(r"listen 127\.0\.0\.1:443 ssl[^;]*;", f"listen 127.0.0.1:{listen_port};", site)
    site = re.sub(r"\n\s*ssl_[^\n]*", "", site)
    assert "limit_req zone=" in site and f":{listen_port};" in site, "guide's site not found"
    return site


def start_nginx(workdir: Path, upstream_port: int):
    directory = workdir / "nginx"
    directory.mkdir(exist_ok=True)
    directory.chmod(0o755)  # nginx's workers may run as another user
    port = free_port()
    (directory / "site.conf").write_text(guide_site(upstream_port, port))
    # Debian's /etc/nginx/nginx.conf: worker_processes auto, 768 connections each.
    (directory / "nginx.conf").write_text(
        f"daemon off;\nworker_processes auto;\npid {directory}/nginx.pid;\n"
        f"error_log {directory}/error.log;\nevents {{ worker_connections 768; }}\n"
        f"http {{\n    access_log off;\n    client_body_temp_path {directory}/body;\n"
        f"    proxy_temp_path {directory}/proxy;\n    include {directory}/site.conf;\n}}\n"
    )
    proc = subprocess.Popen(
        ["nginx", "-p", str(directory), "-c", str(directory / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=(directory / "stderr.log").open("wb"),
    )
    wait_until_up(proc, port, lambda: bool(worker_pids(proc.pid)), "nginx")
    return proc, port


def wait_until_up(proc, port: int, ready, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError):  # not listening yet
            if ready() and call(port, "/healthz", None)[0] == 200:
                return
        time.sleep(0.1)
    proc.kill()
    sys.exit(f"{what} did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM if "gunicorn" in " ".join(proc.args) else signal.SIGQUIT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the valid caller --------------------------------------------------------------------------


def request_bytes(path: str, auth: str | None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def call(port: int, path: str, auth: str | None, source: str = VALID_SOURCE) -> tuple[int, float]:
    """One request on its own connection: (status, seconds); status 0 on a timeout."""
    start = time.perf_counter()
    try:
        with socket.create_connection(
            ("127.0.0.1", port), timeout=CALL_TIMEOUT, source_address=(source, 0)
        ) as conn:
            conn.sendall(request_bytes(path, auth))
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
    except OSError:
        return 0, time.perf_counter() - start
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, time.perf_counter() - start


@dataclass
class Result:
    setup: str
    flood: str
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    flood_statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0


def paced_caller(port: int, auth: str, seconds: float, result: Result) -> None:
    """Call every 1/CALLS_PER_SECOND s; a call that takes longer delays the next one."""
    interval = 1 / CALLS_PER_SECOND
    deadline = time.perf_counter() + seconds
    while (started := time.perf_counter()) < deadline:
        status, elapsed = call(port, "/api/v1/whoami", auth)
        result.statuses[status] += 1
        result.latencies.append(elapsed)
        time.sleep(max(0.0, started + interval - time.perf_counter()))


# --- the flood (its own process: its CPU must not steal the valid caller's GIL) --------------


async def flood(port: int, kind: str, auth: str, connections: int, sources: int, seconds: float):
    deadline = time.monotonic() + seconds
    statuses: Counter = Counter()
    payload = request_bytes("/api/v1/whoami", auth)

    async def one_request(source: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        try:
            writer.write(payload)
            head = await asyncio.wait_for(reader.readline(), CALL_TIMEOUT)
            statuses[int(head.split()[1]) if head.startswith(b"HTTP/") else 0] += 1
            await reader.read()
        finally:
            writer.close()

    async def dribble(source: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        try:
            for byte in payload:
                if time.monotonic() >= deadline or reader.at_eof():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1024), 1.0):
                        statuses["answered"] += 1
                        break  # answered (408, 400): a new connection starts over
            statuses["connections"] += 1
        finally:
            writer.close()

    async def worker(n: int) -> None:
        source = ONE_SOURCE if sources == 1 else f"127.0.1.{n % sources + 1}"
        while time.monotonic() < deadline:
            try:
                await (dribble if kind == "slowloris" else one_request)(source)
            except (TimeoutError, OSError, ValueError, IndexError):
                statuses["error"] += 1
                await asyncio.sleep(0.05)

    await asyncio.gather(*(worker(n) for n in range(connections)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{usage.ru_utime + usage.ru_stime:.3f}")
    print(" ".join(f"{k}={v}" for k, v in statuses.items()))


def flood_main(argv: list[str]) -> None:
    port, kind, auth, connections, sources, seconds = argv
    asyncio.run(flood(int(port), kind, auth, int(connections), int(sources), float(seconds)))


# --- one case ----------------------------------------------------------------------------------


def run_case(setup, port, pids, flood_kind, credentials, args) -> Result:
    label = FLOODS[flood_kind].format(n=args.connections)
    result = Result(setup, label)
    for _ in range(3):  # the verification cache holds the valid password from here on
        call(port, "/api/v1/whoami", credentials["good"])
    flooder = None
    # The flood outlasts the valid caller's last call, however long that call waits.
    flood_seconds = 1 + args.seconds + CALL_TIMEOUT
    if flood_kind != "none":
        auth = credentials["checksum" if flood_kind == "checksum" else "wrong"]
        sources = 1 if flood_kind == "wrong1" else args.connections
        flooder = subprocess.Popen(
            [
                *(sys.executable, __file__, "_flood", str(port), flood_kind, auth),
                *(str(args.connections), str(sources), str(flood_seconds)),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1)  # let the flood build up
    live = [pid for pid in pids() if Path(f"/proc/{pid}").exists()]
    cpu_before, started = cpu_seconds(live), time.perf_counter()
    own_before = time.process_time()
    paced_caller(port, credentials["good"], args.seconds, result)
    result.seconds = time.perf_counter() - started
    with contextlib.suppress(OSError):  # a worker killed by its timeout
        result.server_cpu = cpu_seconds(live) - cpu_before
    result.client_cpu = time.process_time() - own_before
    if flooder is not None:
        out, _ = flooder.communicate(timeout=60)
        cpu, _, counts = out.strip().partition("\n")
        # Its share over its own lifetime, in seconds of the valid caller's run.
        result.client_cpu += float(cpu) * result.seconds / flood_seconds
        result.flood_statuses = Counter(
            {k: int(v) for k, v in (item.split("=") for item in counts.split())}
        )
    time.sleep(1)  # slow connections closed, queues drained
    return result


# --- report ------------------------------------------------------------------------------------


def report(results: list[Result]) -> None:
    cores = os.cpu_count() or 1
    print()
    print(
        "| server | flood | valid calls | p50 ms | p95 ms | p99 ms | errors "
        "| flood answers | server CPU | client CPU |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for r in results:
        errors = sum(n for status, n in r.statuses.items() if status != 200)
        shown = {k: v for k, v in r.flood_statuses.items() if k not in ("connections", "answered")}
        answers = ", ".join(f"{k}: {v:,}" for k, v in sorted(shown.items(), key=str))
        if "connections" in r.flood_statuses:
            answers = f"{r.flood_statuses['connections']} connections held" + (
                f", {r.flood_statuses['answered']} cut off" if r.flood_statuses["answered"] else ""
            )
        failed = ", ".join(
            f"{n} x {status or 'timeout'}" for status, n in r.statuses.items() if status != 200
        )
        p50, p95, p99 = (percentile(r.latencies, p) * 1000 for p in (50, 95, 99))
        print(
            f"| {r.setup} | {r.flood} | {sum(r.statuses.values())} "
            f"| {p50:.1f} | {p95:.1f} | {p99:.1f} | {errors}{f' ({failed})' if failed else ''} "
            f"| {answers or '-'} | {r.server_cpu / r.seconds / cores:.0%} "
            f"| {r.client_cpu / r.seconds / cores:.0%} |"
        )  # fmt: skip
    print(
        f"\nCPU as a share of the machine's {cores} cores; server: gunicorn workers (and nginx's), "
        "client: the flood process and the valid caller."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per case")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--sync-workers", type=int, default=min(2 * (os.cpu_count() or 1) + 1, 8))
    parser.add_argument("--gthread", default="2x8", help="workers x threads")
    parser.add_argument("--floods", default=",".join(FLOODS))
    parser.add_argument("--no-nginx", action="store_true")
    args = parser.parse_args()
    threads_workers, threads = (int(n) for n in args.gthread.split("x"))
    setups = [
        ("sync", args.sync_workers, 1, f"sync, {args.sync_workers} workers"),
        ("gthread", threads_workers, threads, f"gthread, {threads_workers}x{threads}"),
    ]
    with tempfile.TemporaryDirectory(prefix="keyportal-flood-") as tmp:
        workdir = Path(tmp)
        env = server_env(workdir / "bench.sqlite3")
        env["ALLOWED_HOSTS"] = "127.0.0.1"
        credentials = prepare_database(env)
        print(
            f"{args.connections} flood connections, a valid caller at {CALLS_PER_SECOND} "
            f"calls/s, {args.seconds:g} s per case; SQLite, local-memory cache, app throttles "
            "lifted"
        )
        results = []
        for worker_class, workers, threads, label in setups:
            proc, port = start_gunicorn(env, workdir, worker_class, workers, threads)
            try:
                fronts = [("", port, lambda p=proc: worker_pids(p.pid))]
                nginx = None
                if not args.no_nginx:
                    nginx, nginx_port = start_nginx(workdir, port)
                    fronts.append(
                        (
                            " + nginx",
                            nginx_port,
                            lambda p=proc, n=nginx: worker_pids(p.pid) + worker_pids(n.pid),
                        )
                    )
                for suffix, front_port, pids in fronts:
                    for kind in args.floods.split(","):
                        result = run_case(label + suffix, front_port, pids, kind, credentials, args)
                        results.append(result)
                        print(
                            f"  {result.setup}, {result.flood}: p95 "
                            f"{percentile(result.latencies, 95) * 1000:.1f} ms",
                            flush=True,
                        )
            finally:
                if nginx is not None:
                    stop(nginx)
                stop(proc)
        report(results)


if __name__ == "__main__":
    if sys.argv[1:2] == ["_flood"]:
        flood_main(sys.argv[2:])
    else:
        main()
