"""Outbound HTTP to URLs that users choose (webhooks): public HTTPS endpoints only.

A user-supplied URL is a request the server makes on the user's behalf, so it must not reach
what only the server can reach (server-side request forgery): loopback, private and link-local
networks, the cloud metadata service. `TargetPolicy.check_url` says whether a URL may be used
(called when a rule is saved: a clear 422), and `post` sends a request through a connection
that re-resolves the host, vets every address and connects to a vetted one, all in one step,
so a DNS answer that changes between the check and the connection (DNS rebinding) cannot slip
through. TLS still verifies the certificate against the URL's host name (SNI) and the Host
header is the URL's. Redirects are never followed; the response body is read up to a cap and
the whole exchange has one deadline.

Callers see `Outcome.error` as a category only — "target refused", "connection failed",
"timeout", "HTTP 503" — never the network's own words: a refused connection, a reset and a
connect timeout all read "connection failed", so the error cannot be used to scan ports.

Lives in the service kit rather than in the alert service: it knows nothing of alerts, it is
the kind of security-sensitive code that must exist once, and its tests stand on their own.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import time
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import certifi
import httpcore

from database.settings import Settings

log = logging.getLogger("service_kit.egress")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

#: Cloud metadata services; some sit in ranges `ipaddress` calls public (Azure's, Alibaba's).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16")
)
# NAT64 (RFC 6052) carries an IPv4 address in its last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefusedError(Exception):
    """The URL may not be used; `reason` is safe to show to the rule's owner."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IPv4 and IPv6), as the OS resolver answers."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def non_public_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address, or None when it is one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return "a scoped (link-local) address"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return non_public_reason(embedded)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for flag, what in (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, flag):
            return what
    if not address.is_global:  # e.g. 100.64.0.0/10, carrier-grade NAT
        return "not a public address"
    return None


@dataclass(frozen=True)
class TargetPolicy:
    """Which webhook targets are allowed: public addresses, plus named exceptions for local
    development and tests (`WEBHOOK_ALLOWED_HOSTS`: host names or CIDR ranges)."""

    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, resolver: Resolver | None = None) -> TargetPolicy:
        return cls.allowing(settings.webhook_allowed_hosts, resolver=resolver)

    @classmethod
    def allowing(cls, entries: Iterable[str], *, resolver: Resolver | None = None) -> TargetPolicy:
        hosts, networks = set(), []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks), resolver or system_resolver)

    def check_address(self, host: str, address: IPAddress) -> None:
        if host in self.allowed_hosts or any(address in n for n in self.allowed_networks):
            return
        reason = non_public_reason(address)
        if reason is not None:
            raise TargetRefusedError(f"{host} is {reason}" if host == str(address) else
                                     f"{host} resolves to {reason}")  # fmt: skip

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses to connect to for `host`: every one it resolves to must be allowed."""
        host = host.lower().rstrip(".")
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            self.check_address(host, literal)
            return [literal]
        try:
            resolved = [ipaddress.ip_address(a.split("%")[0]) for a in self.resolver(host, port)]
        except (OSError, UnicodeError, ValueError):
            raise TargetRefusedError(f"{host} does not resolve") from None
        if not resolved:
            raise TargetRefusedError(f"{host} does not resolve")
        for address in resolved:
            self.check_address(host, address)
        return resolved

    def check_url(self, url: str) -> None:
        """Refuse anything but an https URL whose host resolves to allowed addresses only."""
        host, port = split_https_url(url)
        self.addresses(host, port)


def split_https_url(url: object) -> tuple[str, int]:
    """(host, port) of an https URL; TargetRefusedError for anything else."""
    if not isinstance(url, str):
        raise TargetRefusedError("the url is not a string")
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError:
        raise TargetRefusedError("the url is malformed") from None
    if parts.scheme != "https":
        raise TargetRefusedError("the url must use https")
    if not parts.hostname:
        raise TargetRefusedError("the url has no host")
    return parts.hostname, port


# -- the connection: resolve, vet and connect in one step --------------------------------


class _DeadlineStream(httpcore.NetworkStream):
    """A stream whose every read and write stops at the exchange's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        wrapped = self._stream.start_tls(
            ssl_context, server_hostname, self._left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(wrapped, self._deadline)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class _VettedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the policy allows, resolved at connection time."""

    def __init__(self, policy: TargetPolicy, deadline: float) -> None:
        self._policy = policy
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._policy.addresses(host, port)
        last: Exception | None = None
        for address in addresses:
            left = self._deadline - time.monotonic()
            if left <= 0:
                break
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=left if timeout is None else min(timeout, left),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise last or httpcore.ConnectTimeout("deadline passed")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise TargetRefusedError("unix sockets are not webhook targets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@dataclass(frozen=True)
class Outcome:
    """What became of one request: `status` when an answer came, `error` as a category."""

    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.error is None


def default_ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


@dataclass
class PublicClient:
    """POSTs to vetted public endpoints, one connection per request (no pooling across
    users' targets), with a total deadline and a cap on the response read."""

    policy: TargetPolicy
    total_seconds: float = 10.0
    connect_seconds: float = 5.0
    max_response_bytes: int = 65_536
    ssl_context: ssl.SSLContext = field(default_factory=default_ssl_context)

    def post(self, url: str, *, content: bytes, headers: Mapping[str, str]) -> Outcome:
        try:
            split_https_url(url)
        except TargetRefusedError:
            return Outcome(None, "target refused")
        deadline = time.monotonic() + self.total_seconds
        pool = httpcore.ConnectionPool(
            ssl_context=self.ssl_context,
            max_connections=1,
            max_keepalive_connections=0,
            network_backend=_VettedBackend(self.policy, deadline),
        )
        timeouts = {"connect": self.connect_seconds, "read": self.total_seconds,
                    "write": self.total_seconds, "pool": self.total_seconds}  # fmt: skip
        try:
            with (
                pool,
                pool.stream(
                    "POST",
                    url,
                    headers=list(headers.items()),
                    content=content,
                    extensions={"timeout": timeouts},
                ) as response,
            ):
                read = 0
                for chunk in response.iter_stream():  # drained up to the cap, then dropped
                    read += len(chunk)
                    if read >= self.max_response_bytes:
                        break
                status = response.status
        except TargetRefusedError as exc:
            log.info("webhook target refused: %s", exc.reason)
            return Outcome(None, "target refused")
        except (httpcore.ReadTimeout, httpcore.WriteTimeout, httpcore.PoolTimeout):
            return Outcome(None, "timeout")
        except (httpcore.ConnectError, httpcore.ConnectTimeout, ssl.SSLError, OSError) as exc:
            log.info("webhook connection failed: %s", type(exc).__name__)
            return Outcome(None, "connection failed")
        except httpcore.ProtocolError:
            return Outcome(None, "invalid response")
        except httpcore.NetworkError:
            return Outcome(None, "connection failed")
        if 300 <= status < 400:
            return Outcome(status, f"HTTP {status} (redirects are not followed)")
        if not 200 <= status < 300:
            return Outcome(status, f"HTTP {status}")
        return Outcome(status, None)
