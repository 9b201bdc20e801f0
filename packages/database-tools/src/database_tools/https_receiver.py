"""A real HTTPS webhook receiver on loopback, for tests and local development.

Webhook targets must be https, and the delivery code checks certificates against the URL's
host name, so tests need a TLS server with a certificate a client can trust: `HttpsReceiver`
makes a throwaway certificate authority, a server certificate for the names given (default
`localhost`), and serves on 127.0.0.1. `client_context()` trusts that authority only.

Behaviour per test: `statuses` (answers in order, the last one repeated), `delay_seconds`
before answering, `location` (sent with 3xx answers), `endless_body` (a 2xx answer whose body
never ends). Everything received is kept in `received` as (headers, body, sni).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificates(names: tuple[str, ...], folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) files for `names`."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test webhook CA"))
        .issuer_name(_name("test webhook CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that give up mid-handshake (often a test's point) are not errors here."""


@dataclass
class HttpsReceiver:
    names: tuple[str, ...] = ("localhost",)
    statuses: list[int] = field(default_factory=lambda: [204])
    delay_seconds: float = 0.0
    location: str | None = None
    endless_body: bool = False
    received: list[tuple[dict[str, str], bytes, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="https-receiver-")
        self.ca_file, cert, key = _certificates(self.names, Path(self._folder.name))
        self._server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_context.load_cert_chain(cert, key)
        self._sni: dict[int, str | None] = {}
        self._server_context.sni_callback = self._remember_sni
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.socket = self._server_context.wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port = int(self._server.server_address[1])

    def _remember_sni(self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: Any) -> None:
        self._sni[id(sock)] = name

    def url(self, path: str = "/hook", *, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                sni = receiver._sni.get(id(self.connection))
                receiver.received.append((dict(self.headers.items()), body, sni))
                index = min(len(receiver.received), len(receiver.statuses)) - 1
                status = receiver.statuses[index]
                if receiver.delay_seconds:
                    time.sleep(receiver.delay_seconds)
                self.send_response(status)
                if receiver.location and 300 <= status < 400:
                    self.send_header("Location", receiver.location)
                if receiver.endless_body:
                    self.send_header("Content-Type", "application/octet-stream")
                    self.end_headers()
                    try:
                        while True:
                            self.wfile.write(b"x" * 65_536)
                    except OSError:
                        return
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> HttpsReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._folder.cleanup()
