"""Real receivers for the audit-streaming tests: an HTTPS webhook receiver and rsyslog.

- A throw-away CA and a server certificate for 127.0.0.1/localhost, made with `cryptography`.
- HttpsReceiver: Python's http.server behind TLS; it checks X-KeyPortal-Signature with the
  destination's secret and appends the body's lines to a file (and a list); it can answer
  500, or hang until released.
- Rsyslog: an unprivileged rsyslogd with its own config in a temp dir, imtcp on a port
  (plain or TLS with the throw-away certificate), writing each message's MSG (the event's
  JSON) to one file and its structured data to another. Missing rsyslogd: skipped loudly,
  failed under CI=true.
- check_jsonl(): the order the lines arrived in (which verify_audit --jsonl, checking in seq
  order, only mentions), with every line's hash and signature, continuity, gaps and
  duplicates; the tests run verify_audit --jsonl on the stored files as well.
"""

import datetime
import hashlib
import hmac
import http.server
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.servers import free_port, require, stop_process, wait_for

# --- a throw-away CA ---------------------------------------------------------------------------


@dataclass
class Certificates:
    ca: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(directory: Path) -> Certificates:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Key Portal test CA"))
        .issuer_name(_name("Key Portal test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    found = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    found.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    found.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    found.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return found


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("stream-ca"))


# --- the HTTPS receiver ------------------------------------------------------------------------


class HttpsReceiver:
    """A webhook receiver on 127.0.0.1: checks the HMAC, stores the lines it accepts."""

    def __init__(self, certificates: Certificates, secret: str, path: Path):
        self.certificates = certificates
        self.secret = secret
        self.path = path
        self.port = free_port()
        self.mode = "ok"  # "ok", "fail" (500) or "hang" (until `release` is set)
        self.release = threading.Event()
        self.lines: list[str] = []
        self.arrivals: list[float] = []  # time.time() each line arrived (bench/stream_lag.py)
        self.requests = 0
        self.bad_signatures = 0
        self.hanging = threading.Event()  # set while a request hangs
        self.server: http.server.ThreadingHTTPServer | None = None
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/collector"

    def _handler(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                if receiver.mode == "hang":
                    receiver.hanging.set()
                    receiver.release.wait()
                if receiver.mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                if not receiver.signature_ok(self.headers.get("X-KeyPortal-Signature", ""), body):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                with receiver.lock:
                    lines = body.decode().splitlines()
                    receiver.lines.extend(lines)
                    receiver.arrivals.extend([time.time()] * len(lines))
                    with receiver.path.open("a") as stored:
                        stored.writelines(line + "\n" for line in lines)
                self.send_response(204)
                self.end_headers()

        return Handler

    def signature_ok(self, header: str, body: bytes) -> bool:
        parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        expected = hmac.new(
            self.secret.encode(), f"{parts.get('t', '')}.".encode() + body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest(expected, parts.get("v1", ""))

    def start(self) -> "HttpsReceiver":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificates.cert, self.certificates.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.server = server
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def stored_documents(self) -> list[dict]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def make_receiver(certificates, tmp_path):
    started: list[HttpsReceiver] = []

    def _make(secret: str, name: str = "received") -> HttpsReceiver:
        receiver = HttpsReceiver(certificates, secret, tmp_path / f"{name}.jsonl").start()
        started.append(receiver)
        return receiver

    yield _make
    for receiver in started:
        receiver.release.set()
        receiver.stop()


# --- rsyslog -----------------------------------------------------------------------------------


class Rsyslog:
    """rsyslogd -n with its own config: one imtcp input (plain or TLS) on a free port."""

    def __init__(self, directory: Path, certificates: Certificates | None):
        self.directory = directory
        self.certificates = certificates
        self.port = free_port()
        self.messages = directory / "messages.jsonl"
        self.structured = directory / "structured.txt"
        self.timed = directory / "timed.txt"  # when rsyslog got each message, then its MSG
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        work = self.directory / "work"
        work.mkdir(exist_ok=True)
        tls = ""
        stream = ""
        if self.certificates is not None:
            tls = (
                'global(DefaultNetstreamDriver="gtls"'
                f' DefaultNetstreamDriverCAFile="{self.certificates.ca}"'
                f' DefaultNetstreamDriverCertFile="{self.certificates.cert}"'
                f' DefaultNetstreamDriverKeyFile="{self.certificates.key}")\n'
            )
            stream = ' StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon"'
        return (
            f'global(workDirectory="{work}" maxMessageSize="256k")\n'
            + tls
            # One worker: messages reach the file in the order they were read.
            + 'main_queue(queue.workerThreads="1")\n'
            + f'module(load="imtcp"{stream})\n'
            + f'input(type="imtcp" port="{self.port}")\n'
            + 'template(name="msg" type="string" string="%msg%\\n")\n'
            + 'template(name="sd" type="string" string="%msgid% %structured-data%\\n")\n'
            + f'action(type="omfile" file="{self.messages}" template="msg")\n'
            + f'action(type="omfile" file="{self.structured}" template="sd")\n'
            + 'template(name="timed" type="string" '
            + 'string="%timegenerated:::date-rfc3339% %msg%\\n")\n'
            + f'action(type="omfile" file="{self.timed}" template="timed")\n'
        )

    def start(self) -> "Rsyslog":
        rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        conf = self.directory / "rsyslog.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen(
            [rsyslogd, "-n", "-f", str(conf), "-i", str(self.directory / "rsyslogd.pid")],
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "rsyslogd.log").open("a"),
        )
        wait_for(self._listening, timeout=20, what="rsyslogd", proc=self.proc)
        return self

    def _listening(self) -> bool:
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def lines(self) -> list[str]:
        return self.messages.read_text().splitlines() if self.messages.exists() else []


def rsyslogd_available() -> bool:
    return bool(shutil.which("rsyslogd") or os.path.exists("/usr/sbin/rsyslogd"))


def _gtls_available() -> bool:
    return any(
        Path(directory, "lmnsd_gtls.so").exists()
        for directory in ("/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/aarch64-linux-gnu/rsyslog")
    )


@pytest.fixture
def rsyslog_tcp(tmp_path):
    if not rsyslogd_available():
        require("rsyslogd is missing (Debian package rsyslog)")
    receiver = Rsyslog(tmp_path / "rsyslog-tcp", None)
    receiver.directory.mkdir()
    yield receiver.start()
    receiver.stop()


@pytest.fixture
def rsyslog_tls(tmp_path, certificates):
    if not rsyslogd_available() or not _gtls_available():
        require("rsyslogd with TLS is missing (Debian packages rsyslog and rsyslog-gnutls)")
    receiver = Rsyslog(tmp_path / "rsyslog-tls", certificates)
    receiver.directory.mkdir()
    yield receiver.start()
    receiver.stop()


# --- the offline check -------------------------------------------------------------------------


@dataclass
class JsonlReport:
    seqs: list[int] = field(default_factory=list)  # every event line's seq, as stored
    duplicates: list[int] = field(default_factory=list)
    gaps: list[int] = field(default_factory=list)  # missing sequence numbers
    out_of_order: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tests: int = 0  # Send test lines (not events)

    @property
    def unique(self) -> list[int]:
        return sorted(set(self.seqs))


def check_jsonl(lines: list[str], public_key_pem: str) -> JsonlReport:
    """Check stored event lines as verify_audit --jsonl does: hash, signature, chain, order.

    A resend after a failure repeats a run of events already stored: that is a duplicate,
    reported, not a break. An event newer than every earlier one must follow the newest
    directly (else a gap), and must chain onto it.
    """
    from keys.audit import signing
    from keys.audit.hashing import GENESIS_HASH, hash_fields

    keys = signing.load_public_keys(public_key_pem)
    report = JsonlReport()
    hashes: dict[int, str] = {0: GENESIS_HASH}
    newest = 0
    for number, line in enumerate(lines, 1):
        document = json.loads(line)
        if document.get("test"):
            report.tests += 1
            continue
        seq = document["seq"]
        report.seqs.append(seq)
        if document["hashed"]["seq"] != seq:
            report.problems.append(f"line {number}: seq {seq} is not the hashed seq")
        if hash_fields(document["prev_hash"], document["hashed"]) != document["hash"]:
            report.problems.append(f"seq {seq}: content does not match its hash")
        if reason := signing.verify(keys, signing.EVENT, document["hash"], document["signature"]):
            report.problems.append(f"seq {seq}: {reason}")
        if seq in hashes and seq != 0:
            report.duplicates.append(seq)
            if hashes[seq] != document["hash"]:
                report.problems.append(f"seq {seq}: two different events")
            continue
        if seq < newest:
            report.out_of_order.append(seq)
        elif seq > newest + 1:
            report.gaps.extend(range(newest + 1, seq))
        if seq - 1 in hashes and hashes[seq - 1] != document["prev_hash"]:
            report.problems.append(f"seq {seq}: does not chain onto seq {seq - 1}")
        hashes[seq] = document["hash"]
        newest = max(newest, seq)
    return report


# --- the sender in its own process ----------------------------------------------------------


def database_url_of_tests() -> str:
    """The test database as a DATABASE_URL, for a sender subprocess (transactional tests)."""
    from django.db import connection

    conf = connection.settings_dict
    if conf["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{conf['NAME']}"
    user = conf["USER"] or ""
    password = f":{conf['PASSWORD']}" if conf["PASSWORD"] else ""
    host = conf["HOST"] or "localhost"
    port = f":{conf['PORT']}" if conf["PORT"] else ""
    return f"postgres://{user}{password}@{host}{port}/{conf['NAME']}"
