"""Run a command against a throwaway PostgreSQL server.

    python tests/with_postgres.py .venv/bin/pytest [ARGS...]
    python tests/with_postgres.py --redis .venv/bin/python bench/api_auth.py

Creates a cluster with initdb in a temporary directory, starts it with pg_ctl on a free
loopback port (as the `postgres` system user when run as root: initdb refuses root), creates
the database, exports DATABASE_URL, runs the command, then stops the server and deletes the
cluster, even when the command fails or is interrupted. Exits with the command's status.
With --redis it also starts a throwaway redis-server (no persistence) and exports CACHE_URL.

Without PostgreSQL binaries it skips loudly (exit 0), except with CI=true, where a missing
part fails the run. PG_BIN may name the directory holding initdb, pg_ctl and postgres.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATABASE = "keyportal"
SUPERUSER = "postgres"
# Throwaway data: durability costs time and buys nothing here.
SERVER_OPTIONS = [
    "listen_addresses=127.0.0.1",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=100",
]


def find_bindir() -> Path | None:
    candidates = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    # Debian keeps the server binaries out of PATH, one directory per major version.
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versions, key=_major_version, reverse=True)]
    if initdb := shutil.which("initdb"):
        candidates.append(Path(os.path.realpath(initdb)).parent)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _major_version(path: str) -> int:
    try:
        return int(Path(path).parent.name)
    except ValueError:
        return 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing(reason: str) -> int:
    if os.environ.get("CI", "").lower() == "true":
        print(f"with_postgres: FAIL: {reason} (CI=true: the PostgreSQL run is required)")
        return 1
    print("=" * 78)
    print(f"with_postgres: SKIPPED the PostgreSQL run: {reason}")
    print("Install it with: apt-get install postgresql (or set PG_BIN).")
    print("=" * 78)
    return 0


class Cluster:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="keyportal-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.started = False
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root.
            shutil.chown(self.root, user=SUPERUSER)
            self.root.chmod(0o700)
            self.as_user = ["runuser", "-u", SUPERUSER, "--"]

    def run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=self.root,
        )

    def start(self) -> None:
        self.run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        options = " ".join(f"-c {option}" for option in SERVER_OPTIONS)
        for attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            try:
                self.run(
                    "pg_ctl",
                    "start",
                    "--pgdata",
                    str(self.data),
                    "--log",
                    str(self.log),
                    "--wait",
                    "--timeout",
                    "60",
                    "-o",
                    f"-p {self.port} -k {self.root} {options}",
                )
            except subprocess.CalledProcessError:
                if attempt == 2:
                    print(self.log.read_text(errors="replace")[-4000:], file=sys.stderr)
                    raise
            else:
                self.started = True
                break
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, DATABASE)

    @property
    def url(self) -> str:
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def stop(self) -> None:
        """Stop the server as an outage would (fast: connections are cut)."""
        self.run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast")

    def restart(self) -> None:
        """Start the stopped server again on the same port."""
        options = " ".join(f"-c {option}" for option in SERVER_OPTIONS)
        self.run("pg_ctl", "start", "--pgdata", str(self.data), "--log", str(self.log),
                 "--wait", "-o", f"-p {self.port} -k {self.root} {options}")  # fmt: skip

    def destroy(self) -> None:
        if self.started:
            try:
                self.run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast")
            except subprocess.CalledProcessError:
                self.run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="keyportal-redis-"))
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        for attempt in range(3):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [
                    *("redis-server", "--bind", "127.0.0.1", "--port", str(self.port)),
                    *("--dir", str(self.root), "--save", "", "--appendonly", "no"),
                ],
                stdout=subprocess.DEVNULL,
            )
            for _ in range(100):  # up to 10 s
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                        return
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
            self.stop()
            if attempt == 2:
                raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    with_redis = bool(argv) and argv[0] == "--redis"
    argv = argv[1:] if with_redis else argv
    if not argv:
        print(__doc__)
        return 2
    bindir = find_bindir()
    if bindir is None:
        return missing("no initdb/pg_ctl/postgres found")
    if with_redis and shutil.which("redis-server") is None:
        return missing("no redis-server found")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return missing("running as root needs runuser to start PostgreSQL as 'postgres'")
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    cluster = Cluster(bindir)
    redis = Redis() if with_redis else None
    try:
        cluster.start()
        print(f"with_postgres: PostgreSQL ({bindir}) on 127.0.0.1:{cluster.port}", flush=True)
        env = {**os.environ, "DATABASE_URL": cluster.url}
        if redis is not None:
            redis.start()
            print(f"with_postgres: Redis on 127.0.0.1:{redis.port}", flush=True)
            env["CACHE_URL"] = redis.url
        with subprocess.Popen(argv, env=env) as child:
            try:
                return child.wait()
            except BaseException:
                child.terminate()
                child.wait(timeout=60)
                raise
    finally:
        if redis is not None:
            redis.destroy()
        cluster.destroy()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
