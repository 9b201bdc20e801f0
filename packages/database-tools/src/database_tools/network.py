"""Network helpers for tests: put a real server behind another port (e.g. 6543, the pooler's)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class PortTakenError(RuntimeError):
    """The port a forwarder should listen on is in use."""


@contextmanager
def tcp_forwarder(*, listen_port: int, target_host: str, target_port: int) -> Iterator[int]:
    """Forward 127.0.0.1:listen_port to the target: lets a real server appear on another port."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(("127.0.0.1", listen_port))
    except OSError:
        server.close()
        raise PortTakenError(f"port {listen_port} is taken on this machine") from None
    server.listen()
    stop = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection((target_host, target_port))
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listen_port
    finally:
        stop.set()
        thread.join()
        server.close()
