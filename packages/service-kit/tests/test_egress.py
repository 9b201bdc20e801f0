"""Webhook targets: which addresses are refused, and real requests through the vetted
connection to an HTTPS receiver on loopback (SNI, Host, redirects, caps, error categories)."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator

import pytest

from database.settings import load_settings
from database_tools.https_receiver import HttpsReceiver
from service_kit.egress import PublicClient, TargetPolicy, TargetRefusedError, non_public_reason

PUBLIC = TargetPolicy()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
        "169.254.1.1", "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255",
        "100.100.100.200", "168.63.129.16", "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254",
        "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",
        "2002:7f00:1::", "64:ff9b::a9fe:a9fe", "2001:db8::1",
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    assert non_public_reason(ipaddress.ip_address(address)) is not None
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(TargetRefusedError):
        PUBLIC.check_url(f"https://{host}/hook")


@pytest.mark.parametrize("address", ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert non_public_reason(ipaddress.ip_address(address)) is None
    host = f"[{address}]" if ":" in address else address
    PUBLIC.check_url(f"https://{host}:8443/hook")


def test_every_resolved_address_must_be_public() -> None:
    def resolver(host: str, port: int) -> list[str]:
        return {"mixed.test": ["1.1.1.1", "10.0.0.5"], "fine.test": ["1.1.1.1"]}[host]

    policy = TargetPolicy(resolver=resolver)
    policy.check_url("https://fine.test/x")
    with pytest.raises(TargetRefusedError, match="private"):
        policy.check_url("https://mixed.test/x")
    for bad in ("http://fine.test/x", "ftp://fine.test", "https:///x", "not a url", "https://"):
        with pytest.raises(TargetRefusedError):
            policy.check_url(bad)
    with pytest.raises(TargetRefusedError, match="does not resolve"):
        PUBLIC.check_url("https://no-such-host.invalid/x")


def test_the_setting_allows_named_hosts_and_ranges() -> None:
    settings = load_settings(webhook_allowed_hosts="localhost, 10.9.0.0/16")
    policy = TargetPolicy.from_settings(settings)
    policy.check_url("https://localhost:9/x")
    policy.check_url("https://10.9.3.4/x")
    with pytest.raises(TargetRefusedError):
        policy.check_url("https://10.8.3.4/x")
    with pytest.raises(TargetRefusedError):
        policy.check_url("https://127.0.0.1/x")  # the name was allowed, not its address
    assert TargetPolicy.from_settings(load_settings()) == TargetPolicy()  # off by default


@pytest.fixture
def receiver() -> Iterator[HttpsReceiver]:
    with HttpsReceiver(names=("localhost", "hooks.test")) as r:
        yield r


def _client(receiver: HttpsReceiver, policy: TargetPolicy, **kw: float) -> PublicClient:
    return PublicClient(policy, ssl_context=receiver.client_context(), **kw)  # type: ignore[arg-type]


def test_a_vetted_request_keeps_host_and_sni(receiver: HttpsReceiver) -> None:
    # hooks.test resolves (for this policy) to loopback, allowed as a range: the connection goes
    # to the vetted address while TLS and the Host header still say hooks.test.
    policy = TargetPolicy.allowing(["127.0.0.0/8"], resolver=lambda h, p: ["127.0.0.1"])
    outcome = _client(receiver, policy).post(
        receiver.url(host="hooks.test"), content=b"{}", headers={"X-Test": "1"}
    )
    assert (outcome.status, outcome.error) == (204, None)
    ((headers, body, sni),) = receiver.received
    assert headers["Host"] == f"hooks.test:{receiver.port}" and sni == "hooks.test"
    assert body == b"{}" and headers["X-Test"] == "1"


def test_loopback_is_refused_without_the_setting(receiver: HttpsReceiver) -> None:
    outcome = _client(receiver, PUBLIC).post(receiver.url(), content=b"{}", headers={})
    assert outcome.error == "target refused" and receiver.received == []


def test_rebinding_after_the_check_is_refused_at_connect(receiver: HttpsReceiver) -> None:
    answers = iter([["1.1.1.1"], ["127.0.0.1"]])  # public when saved, loopback when used
    policy = TargetPolicy(resolver=lambda h, p: next(answers))
    url = receiver.url(host="hooks.test")
    policy.check_url(url)
    assert _client(receiver, policy).post(url, content=b"{}", headers={}).error == (
        "target refused"
    )
    assert receiver.received == []


def test_redirects_are_not_followed(receiver: HttpsReceiver) -> None:
    receiver.statuses, receiver.location = [302], "https://169.254.169.254/latest/meta-data"
    outcome = _client(receiver, TargetPolicy.allowing(["localhost"])).post(
        receiver.url(), content=b"{}", headers={}
    )
    assert outcome.status == 302 and outcome.error is not None
    assert outcome.error.startswith("HTTP 302") and len(receiver.received) == 1


def test_an_endless_body_is_cut_at_the_cap(receiver: HttpsReceiver) -> None:
    receiver.statuses, receiver.endless_body = [200], True
    outcome = _client(receiver, TargetPolicy.allowing(["localhost"])).post(
        receiver.url(), content=b"{}", headers={}
    )
    assert (outcome.status, outcome.error) == (200, None)


def test_a_slow_answer_is_a_timeout(receiver: HttpsReceiver) -> None:
    receiver.delay_seconds = 3
    client = _client(receiver, TargetPolicy.allowing(["localhost"]), total_seconds=0.5)
    assert client.post(receiver.url(), content=b"{}", headers={}).error == "timeout"


def _silent_port() -> Iterator[int]:
    """A port that accepts TCP connections but never speaks (TLS handshake hangs)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _resetting_port(stop: threading.Event) -> int:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            conn.close()  # RST
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1])


def test_closed_reset_and_silent_ports_read_the_same() -> None:
    policy = TargetPolicy.allowing(["localhost", "127.0.0.0/8"])
    client = PublicClient(policy, total_seconds=5, connect_seconds=0.5)
    stop = threading.Event()
    try:
        errors = {}
        errors["closed"] = client.post(
            f"https://127.0.0.1:{_closed_port()}/", content=b"", headers={}
        ).error
        errors["reset"] = client.post(
            f"https://127.0.0.1:{_resetting_port(stop)}/", content=b"", headers={}
        ).error
        for port in _silent_port():
            errors["silent"] = client.post(
                f"https://127.0.0.1:{port}/", content=b"", headers={}
            ).error
    finally:
        stop.set()
    assert set(errors.values()) == {"connection failed"}, errors


def test_untrusted_certificate_is_a_connection_failure(receiver: HttpsReceiver) -> None:
    client = PublicClient(TargetPolicy.allowing(["localhost"]))  # the public CAs only
    assert client.post(receiver.url(), content=b"{}", headers={}).error == "connection failed"
    assert receiver.received == []


def test_the_deadline_covers_the_whole_exchange(receiver: HttpsReceiver) -> None:
    receiver.statuses, receiver.endless_body = [200], True
    client = _client(
        receiver, TargetPolicy.allowing(["localhost"]), total_seconds=0.5, max_response_bytes=10**12
    )
    assert client.post(receiver.url(), content=b"{}", headers={}).error == "timeout"
