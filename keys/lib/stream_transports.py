"""How audit events leave the portal: an HTTPS webhook and syslog over TCP or TLS.

Plain transport, no models (keys.audit.delivery decides what to send and records the result).
Every failure is a DeliveryError whose text is short and safe to show on a page and in
/readyz: it never holds a secret, a header value or the events.

Acknowledgement, honestly:
- Webhook: the receiver's 2xx answer to the POST. It says it took the whole batch.
- Syslog over TCP/TLS (RFC 6587 / RFC 5425) has no acknowledgement in the protocol. After the
  batch the sender half-closes the connection and waits until the receiver closes its side:
  that proves the receiver *read* every byte (it saw our end of stream after them). It does
  not prove the receiver wrote them anywhere; a receiver that crashes between reading and
  writing loses them, and the sender cannot know. Where that matters, use the webhook.
"""

import hashlib
import hmac
import http.client
import socket
import ssl
import time
from urllib.parse import urlsplit

USER_AGENT = "KeyPortal-AuditStream/1"
SIGNATURE_HEADER = "X-KeyPortal-Signature"
# RFC 5424: facility 13 (log audit), severity 6 (informational).
SYSLOG_PRI = 13 * 8 + 6
# The structured-data ID: name@<private enterprise number>; 32473 is the number RFC 5612
# reserves for documentation, used until the project registers its own.
SD_ID = "keyportal@32473"


class DeliveryError(Exception):
    """The receiver did not acknowledge; str() is safe to show."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-KeyPortal-Signature value: t=<unix time>,v1=<hex HMAC-SHA256(secret, "t.body")>."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def tls_context(cafile: str | None) -> ssl.SSLContext:
    """Certificates and host names verified: against `cafile` if given, else the system CAs."""
    return ssl.create_default_context(cafile=cafile)


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({error.verify_message})"
    if isinstance(error, ssl.SSLError):
        return f"TLS error ({error.reason or 'handshake failed'})"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return "connection reset by the receiver"
    if isinstance(error, socket.gaierror):
        return "host name not found"
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return type(error).__name__


def webhook_post(
    url: str,
    body: bytes,
    *,
    secret: str,
    headers: dict[str, str],
    timeout: float,
    cafile: str | None,
) -> str:
    """POST one batch (JSON lines); the receiver's answer, e.g. "HTTP 200 OK"."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            host, parts.port, timeout=timeout, context=tls_context(cafile)
        )
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    sent_headers = {
        **headers,
        "Content-Type": "application/x-ndjson",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature(secret, int(time.time()), body),
    }
    try:
        connection.request("POST", path, body=body, headers=sent_headers)
        response = connection.getresponse()
        response.read(64 * 1024)
    except (OSError, http.client.HTTPException) as error:
        raise DeliveryError(_describe(error)) from None
    finally:
        connection.close()
    answer = f"HTTP {response.status} {response.reason}".strip()
    if not 200 <= response.status < 300:
        raise DeliveryError(answer)
    return answer


def _escape_param(value: str) -> str:
    # RFC 5424 §6.3.3: '"', '\' and ']' are escaped with a backslash inside PARAM-VALUE.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_message(
    *, at: str, hostname: str, msgid: str, params: dict[str, object], msg: str
) -> bytes:
    """One RFC 5424 message, framed by octet counting (RFC 6587 §3.4.1)."""
    data = " ".join(f'{name}="{_escape_param(str(value))}"' for name, value in params.items())
    line = f"<{SYSLOG_PRI}>1 {at} {hostname or '-'} keyportal - {msgid} [{SD_ID} {data}] {msg}"
    raw = line.encode()
    return f"{len(raw)} ".encode() + raw


def syslog_send(
    host: str,
    port: int,
    frames: list[bytes],
    *,
    tls: bool,
    timeout: float,
    cafile: str | None,
) -> str:
    """Send framed messages on one connection and wait until the receiver has read them all."""
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        raise DeliveryError(_describe(error)) from None
    sock: socket.socket = raw
    try:
        if tls:
            sock = tls_context(cafile).wrap_socket(raw, server_hostname=host)
        sock.sendall(b"".join(frames))
        # End of our stream; the receiver closes its side once it has read everything.
        if tls:
            # TLS has no half-close: wait for the receiver's close after our close_notify.
            try:
                sock = sock.unwrap()  # type: ignore[attr-defined]
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                pass  # it closed the connection without a close_notify of its own: also an end
            else:
                sock.shutdown(socket.SHUT_WR)
                _wait_for_close(sock)
        else:
            sock.shutdown(socket.SHUT_WR)
            _wait_for_close(sock)
    except (OSError, ssl.SSLError) as error:
        raise DeliveryError(_describe(error)) from None
    finally:
        sock.close()
    how = "TLS" if tls else "TCP"
    return f"{how} connection accepted; {len(frames)} message(s) read by the receiver"


def _wait_for_close(sock: socket.socket) -> None:
    while sock.recv(4096):
        pass
