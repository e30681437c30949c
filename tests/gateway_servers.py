"""Real gateways for the tests and the bench: nginx and Caddy run with the configurations of
docs/gateways.md, read from the guide itself so that the two cannot drift, in front of a
recording upstream.

The guide's blocks name the portal as 127.0.0.1:8000, the upstream as 127.0.0.1:9000 and the
gateways' ports 8080 (nginx) and 8081 (Caddy); `nginx_config` and `caddy_config` put the
ports of the run in their place and nothing else.
"""

import os
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.servers import free_port, stop_process, wait_for

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "gateways.md"
PORTAL = "127.0.0.1:8000"
UPSTREAM = "127.0.0.1:9000"


def config_block(name: str) -> str:
    """The fenced block after `<!-- config: name -->` in docs/gateways.md."""
    text = GUIDE.read_text()
    match = re.search(rf"<!-- config: {re.escape(name)} -->\n```\w*\n(.*?)```", text, re.S)
    if match is None:
        raise AssertionError(f"docs/gateways.md has no block <!-- config: {name} -->")
    return match.group(1)


class Upstream:
    """The service a gateway guards: answers 200 to anything, records each request."""

    def __init__(self):
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with upstream.lock:
                    upstream.requests.append(
                        (self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                    )
                body = b"upstream says hello\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "Upstream":
        self.thread.start()
        return self

    @property
    def hits(self) -> int:
        with self.lock:
            return len(self.requests)

    def last(self) -> tuple[str, str, dict[str, str]]:
        with self.lock:
            return self.requests[-1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def nginx_executable() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )


def caddy_executable() -> str | None:
    return shutil.which("caddy")


def nginx_config(
    directory: Path, *, port: int, portal: int, upstream: int, cache: bool = False, extra=""
) -> str:
    """A whole nginx.conf: a few lines to run unprivileged in `directory`, around the guide's
    server block (and, with `cache`, its proxy_cache lines)."""
    server = config_block("nginx")
    server = server.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    server = server.replace(PORTAL, f"127.0.0.1:{portal}").replace(
        UPSTREAM, f"127.0.0.1:{upstream}"
    )
    cache_path = ""
    if cache:
        cache_path = config_block("nginx-cache").replace(
            "/var/cache/nginx/key-portal", str(directory / "cache")
        )
        lines = config_block("nginx-cache-location")
        anchor = "location = /_key_portal_check {\n        internal;\n"
        assert anchor in server, "the check location of the guide changed"
        server = server.replace(anchor, anchor + lines)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n    access_log off;\n{temp}\n{cache_path}{extra}\n{server}}}\n"
    )


class Gateway:
    """nginx or Caddy, in the foreground, with a configuration file in `directory`."""

    def __init__(self, kind: str, directory: Path, command: list[str], port: int):
        self.kind = kind
        self.directory = directory
        self.command = command
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Gateway":
        import socket

        log = (self.directory / "gateway.log").open("ab")
        env = {**os.environ, "HOME": str(self.directory), "XDG_DATA_HOME": str(self.directory)}
        self.proc = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory, env=env
        )
        log.close()

        def listening():
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True

        try:
            wait_for(listening, timeout=20, what=self.kind, proc=self.proc)
        except (RuntimeError, TimeoutError) as error:
            self.stop()
            raise AssertionError(f"{error}\n{self.output()[-3000:]}") from None
        return self

    def output(self) -> str:
        text = ""
        for name in ("gateway.log", "error.log"):
            if (self.directory / name).exists():
                text += (self.directory / name).read_text(errors="replace")
        return text

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def start_nginx(directory: Path, *, portal: int, upstream: int, cache: bool = False) -> Gateway:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(
        nginx_config(directory, port=port, portal=portal, upstream=upstream, cache=cache)
    )
    command = [nginx_executable(), "-p", str(directory), "-c", str(conf), "-e", "stderr"]
    return Gateway("nginx", directory, command, port).start()


def start_caddy(directory: Path, *, portal: int, upstream: int) -> Gateway:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    site = config_block("caddy")
    site = site.replace(":8081 {", f":{port} {{", 1)
    site = site.replace(PORTAL, f"127.0.0.1:{portal}").replace(UPSTREAM, f"127.0.0.1:{upstream}")
    conf = directory / "Caddyfile"
    conf.write_text(
        "{\n    admin off\n    auto_https off\n"
        f"    storage file_system {directory / 'data'}\n}}\n\n" + site
    )
    command = [caddy_executable(), "run", "--config", str(conf), "--adapter", "caddyfile"]
    return Gateway("caddy", directory, command, port).start()
