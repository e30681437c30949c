"""Benchmark the API authentication path against an unauthenticated endpoint, side by side.

    make bench            # or: .venv/bin/python bench/api_auth.py [--rounds 5 --seconds 2]

Starts gunicorn (2 sync workers, persistent database connections) on a loopback socket with
a fresh SQLite database (or the empty database of DATABASE_URL, with CACHE_URL's cache:
`make bench-scale` gives it throwaway PostgreSQL and Redis servers), then a bounded load
generator (a few client threads, each request on its own connection, every round capped in
time and in requests). Rounds alternate over the cases, so a slow moment of the machine hits
all of them alike. It prints requests/s, latency p50/p99, server CPU per request (the request
threads, and the usage flusher's background work beside it), and the database queries, cache
calls (Redis round trips) and Argon2 verifications per request (counted in the server by
bench/counters.py), then checks issue 12's targets for the deployment measured.

The server runs in proxy mode trusting 127.0.0.1, and every request carries X-Forwarded-For,
so a "non-allowlisted IP" is simulated by a forged header from the trusted loopback proxy.
Throttle limits are lifted so each case measures its own path, not 429s.
"""

import argparse
import base64
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ALLOWED_IP = "198.51.100.7"
OTHER_IP = "203.0.113.9"
CLIENT_THREADS = 4
MAX_REQUESTS_PER_ROUND = 20_000
COLD_KEYS = 3_000
# Each worker's usage flusher stores what it counted once a second: a round's records are
# stored, and their CPU counted for that round, before the next round starts.
FLUSH_SETTLE_SECONDS = 1.5


def server_env(database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "KEYS_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        PYTHONPATH=str(REPO),
        DATABASE_URL=os.environ.get("DATABASE_URL") or f"sqlite:///{database}",
        SECRET_KEY="bench-" + secrets.token_urlsafe(40),
        AUDIT_SIGNING_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        DEBUG="0",
        HTTPS="0",
        ALLOWED_HOSTS="127.0.0.1",
        CACHE_URL=os.environ.get("CACHE_URL", ""),
        DB_CONN_MAX_AGE="600",
        LOG_LEVEL="WARNING",
        KEYS_TRUSTED_PROXIES="127.0.0.1",
        KEYS_PROXY_HEADER="HTTP_X_FORWARDED_FOR",
        KEYS_THROTTLE_MAX_FAILURES_PER_IP=str(10**9),
        KEYS_THROTTLE_MAX_FAILURES_PER_KEY=str(10**9),
    )
    return env


def backends(env: dict[str, str]) -> str:
    database = "PostgreSQL" if env["DATABASE_URL"].startswith("postgres") else "SQLite"
    return database + (" + Redis" if env["CACHE_URL"].startswith("redis") else "")


# --- set-up: database, keys ----------------------------------------------------------------


def prepare_database(env: dict[str, str]) -> dict:
    """Migrate, then create the bench key and a pool of never-used keys for cold calls."""
    os.environ.update(env)
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from keys import actions, tokens
    from keys.models import AllowedIp, Api, ApiKey, latest_expiry_for, local_date

    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("bench")
    owner.groups.add(Group.objects.get(name="staff"))
    risks = Api.objects.get(slug="risks")
    latest = latest_expiry_for(local_date())
    key, password = actions.create_key(
        owner=owner, name="bench", expires_on=latest, networks=[ALLOWED_IP], apis=[risks]
    )

    # Cold keys are made in bulk (a bench shortcut past create_key), each with its own
    # password, since a password names its key: each is verified with Argon2 on its first
    # call, which is what we measure.
    cold_identifiers = [tokens.generate_identifier() for _ in range(COLD_KEYS)]
    cold_passwords = [tokens.generate_password(identifier) for identifier in cold_identifiers]
    now = timezone.now()
    with transaction.atomic():
        cold = ApiKey.objects.bulk_create(
            ApiKey(
                owner=owner,
                name=f"cold {n}",
                identifier=cold_identifier,
                password_hash=tokens.hash_password(cold_password),
                created_at=now,
                created_on=local_date(now),
                latest_expires_on=latest,
                expires_on=latest,
            )
            for n, (cold_identifier, cold_password) in enumerate(
                zip(cold_identifiers, cold_passwords, strict=True)
            )
        )
        AllowedIp.objects.bulk_create(AllowedIp(key=k, network=f"{ALLOWED_IP}/32") for k in cold)
        ApiKey.apis.through.objects.bulk_create(
            ApiKey.apis.through(apikey_id=k.pk, api_id=risks.pk) for k in cold
        )
    connection.close()
    return {
        "identifier": key.identifier,
        "password": password,
        "other_password": tokens.generate_password(key.identifier),
        "cold": list(zip(cold_identifiers, cold_passwords, strict=True)),
    }


# --- the server ------------------------------------------------------------------------------


def start_gunicorn(env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen, int]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    port = listener.getsockname()[1]
    log = (workdir / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "portal.wsgi",
            "--workers",
            "2",
            "--worker-class",
            "sync",
            "--bind",
            f"fd://{listener.fileno()}",
            "--max-requests",
            "0",
        ],
        env=env,
        cwd=workdir,  # not the repository: its gunicorn.conf.py is the production set-up
        pass_fds=[listener.fileno()],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    listener.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"gunicorn exited; see {workdir / 'gunicorn.log'}")
        if len(worker_pids(proc.pid)) == 2:
            with contextlib.suppress(OSError):  # not listening yet
                if request(port, build("/healthz", None, ALLOWED_IP)).status == 200:
                    return proc, port
        time.sleep(0.1)
    proc.kill()
    sys.exit("gunicorn did not start")


def worker_pids(master: int) -> list[int]:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return []
    return [int(pid) for pid in children]


def _ticks(stat: Path) -> int:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def cpu_seconds(pids: list[int]) -> float:
    return sum(_ticks(Path(f"/proc/{pid}/stat")) for pid in pids) / os.sysconf("SC_CLK_TCK")


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """(CPU seconds of the workers' request threads, of their other threads: the usage
    flusher). A sync worker serves requests on its main thread, whose id is the pid."""
    main = other = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            ticks = _ticks(task / "stat")
            if int(task.name) == pid:
                main += ticks
            else:
                other += ticks
    hertz = os.sysconf("SC_CLK_TCK")
    return main / hertz, other / hertz


# --- the load generator -------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    queries: int
    argon2: int
    cache: int


def build(path: str, credentials: tuple[str, str] | None, forwarded_for: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", f"X-Forwarded-For: {forwarded_for}"]
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        lines.append(f"Authorization: Basic {token}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def request(port: int, payload: bytes) -> Reply:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(payload)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    head = b"".join(chunks).split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
    return Reply(
        status=int(head[0].split()[1]),
        queries=int(headers.get("X-Bench-Queries", -1)),
        argon2=int(headers.get("X-Bench-Argon2", -1)),
        cache=int(headers.get("X-Bench-Cache", -1)),
    )


@dataclass
class Case:
    label: str
    expected: int
    next_payload: object  # () -> bytes | None (None: nothing left to send)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu: float = 0.0
    background_cpu: float = 0.0
    queries: int = 0
    cache: int = 0
    argon2: int = 0
    unexpected: int = 0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def run_round(case: Case, port: int, pids: list[int], seconds: float) -> None:
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    sent = 0
    results: list[tuple[float, Reply]] = []

    def client():
        nonlocal sent
        while time.perf_counter() < deadline:
            with lock:
                if sent >= MAX_REQUESTS_PER_ROUND:
                    return
                payload = case.next_payload()
                if payload is None:
                    return
                sent += 1
            start = time.perf_counter()
            reply = request(port, payload)
            elapsed = time.perf_counter() - start
            with lock:
                results.append((elapsed, reply))

    threads = [threading.Thread(target=client) for _ in range(CLIENT_THREADS)]
    (main_before, other_before), started = cpu_split(pids), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    case.seconds += time.perf_counter() - started
    time.sleep(FLUSH_SETTLE_SECONDS)  # the flusher stores this round's records
    main_after, other_after = cpu_split(pids)
    case.cpu += main_after - main_before
    case.background_cpu += other_after - other_before
    for elapsed, reply in results:
        case.latencies.append(elapsed)
        case.queries += reply.queries
        case.cache += reply.cache
        case.argon2 += reply.argon2
        case.unexpected += reply.status != case.expected


def make_cases(data: dict) -> list[Case]:
    good = (data["identifier"], data["password"])
    wrong = (data["identifier"], data["other_password"])  # well-formed, fails Argon2
    typo = (
        data["identifier"],
        data["password"][:-1] + ("A" if data["password"][-1] != "A" else "B"),
    )
    cold = iter(data["cold"])
    cold_lock = threading.Lock()

    def constant(payload: bytes):
        return lambda: payload

    def next_cold():
        with cold_lock:
            credentials = next(cold, None)
        return None if credentials is None else build("/api/v1/whoami", credentials, ALLOWED_IP)

    whoami = "/api/v1/whoami"
    return [
        Case("unauthenticated /healthz", 200, constant(build("/healthz", None, ALLOWED_IP))),
        Case("whoami, valid key, cache warm", 200, constant(build(whoami, good, ALLOWED_IP))),
        Case("whoami, valid key, cache cold", 200, next_cold),
        Case("wrong password", 401, constant(build(whoami, wrong, ALLOWED_IP))),
        Case("bad checksum", 401, constant(build(whoami, typo, ALLOWED_IP))),
        Case("IP not allowlisted", 401, constant(build(whoami, good, OTHER_IP))),
    ]


# --- report ----------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# Issue 12's targets: (warm, bad checksum, IP not allowlisted) as x /healthz, cold CPU ms.
TARGETS = {"SQLite": (0.8, 0.9, 0.75, 5.0), "PostgreSQL + Redis": (0.6, 0.85, 0.6, 6.0)}


def report(cases: list[Case], deployment: str) -> bool:
    base = cases[0].rate
    print()
    print(
        "| case | requests/s | x unauthenticated | p50 ms | p99 ms | server CPU ms/request "
        "| + background ms/request | DB queries/request | cache calls/request | Argon2/request "
        "| unexpected status |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in cases:
        n = max(case.count, 1)
        print(
            f"| {case.label} | {case.rate:,.0f} | {case.rate / base:.2f} "
            f"| {percentile(case.latencies, 50) * 1000:.1f} "
            f"| {percentile(case.latencies, 99) * 1000:.1f} "
            f"| {case.cpu / n * 1000:.2f} | {case.background_cpu / n * 1000:.2f} "
            f"| {case.queries / n:.2f} | {case.cache / n:.2f} "
            f"| {case.argon2 / n:.2f} | {case.unexpected} |"
        )  # fmt: skip
    by = {case.label: case for case in cases}
    warm, cold, typo, ip = (
        by["whoami, valid key, cache warm"],
        by["whoami, valid key, cache cold"],
        by["bad checksum"],
        by["IP not allowlisted"],
    )
    warm_x, typo_x, ip_x, cold_ms = TARGETS.get(deployment, TARGETS["PostgreSQL + Redis"])
    n = {case.label: max(case.count, 1) for case in cases}
    checks = [
        (f"warm authenticated >= {warm_x}x", warm.rate / base >= warm_x),
        ("warm: one DB query, at most one cache call",
         warm.queries == n[warm.label] and warm.cache <= n[warm.label]),
        (f"bad checksum >= {typo_x}x", typo.rate / base >= typo_x),
        ("bad checksum: zero DB queries, zero cache calls", typo.queries == typo.cache == 0),
        (f"IP not allowlisted >= {ip_x}x", ip.rate / base >= ip_x),
        ("IP not allowlisted: zero Argon2", ip.argon2 == 0),
        (f"cold: server CPU of the request <= {cold_ms:g} ms (its records' background CPU apart)",
         cold.cpu / n[cold.label] * 1000 <= cold_ms),
        ("every answer as expected", all(case.unexpected == 0 for case in cases)),
    ]  # fmt: skip
    print()
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")
    return all(ok for _label, ok in checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="per case and round")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="keyportal-bench-") as tmp:
        workdir = Path(tmp)
        env = server_env(workdir / "bench.sqlite3")
        data = prepare_database(env)
        proc, port = start_gunicorn(env, workdir)
        try:
            pids = worker_pids(proc.pid)
            cases = make_cases(data)
            warmup = make_cases(data)
            for case in warmup[:2] + warmup[3:]:  # connections, caches; not the cold pool
                run_round(case, port, pids, 0.5)
            print(
                f"gunicorn: 2 sync workers, {backends(env)}, persistent connections; "
                f"{CLIENT_THREADS} client threads; {args.rounds} alternating rounds of "
                f"{args.seconds:g} s per case"
            )
            for number in range(args.rounds):
                order = cases[number % len(cases) :] + cases[: number % len(cases)]
                for case in order:
                    run_round(case, port, pids, args.seconds)
            ok = report(cases, backends(env))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
