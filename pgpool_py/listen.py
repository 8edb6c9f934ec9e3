"""
Listen sockets, for clients and for PCP alike: TCP on a list of addresses plus Unix sockets
named ``.s.PGSQL.<port>`` in some directories.  Main creates them all before forking (as
pgpool-II does), so a port is accepting as soon as pgpool-py says it started.
"""

from __future__ import annotations

import os
import socket
from typing import Iterable

from pgpool_py.errors import ServerHalt

MAX_BACKLOG = 10000  # pgpool-II's cap


def open_listeners(
    what: str,
    addresses: str,
    port: int,
    socket_dirs: Iterable[str],
    backlog: int,
    *,
    unix_mode: int = 0o777,
    defer_accept: int = 0,
) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets; ServerHalt naming ``what`` when one fails."""
    out: list[socket.socket] = []
    try:
        for addr in (a.strip() for a in addresses.split(",")):
            if not addr:
                continue
            for host in (["0.0.0.0", "::"] if addr == "*" else [addr]):
                try:
                    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
                except socket.gaierror as exc:
                    raise ServerHalt(f'invalid {what} address "{addr}": {exc.strerror}') from exc
                family, _type, _proto, _canon, sockaddr = infos[0]
                sock = socket.socket(family, socket.SOCK_STREAM)
                out.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(sockaddr)
                except OSError as exc:
                    raise ServerHalt(f"could not bind {what} socket {host}:{port}: {exc.strerror}") from exc
                # Accepted connections inherit these on Linux: set once here, not per client.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                if defer_accept:
                    # Clients speak first in these protocols: the kernel holds a connection
                    # until its first bytes arrive, so clients that connect and say nothing
                    # never take a child (pgpool-II 4.3 let them tie up every child).
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, defer_accept)
        for directory in socket_dirs:
            path = os.path.join(directory, f".s.PGSQL.{port}")
            remove_stale_socket(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            out.append(sock)
            try:
                sock.bind(path)
            except OSError as exc:
                raise ServerHalt(f'could not bind {what} Unix socket "{path}": {exc.strerror}') from exc
            os.chmod(path, unix_mode)
        if not out:
            raise ServerHalt(f"no {what} listen socket: set its addresses or socket directory")
        for sock in out:
            sock.listen(min(backlog, MAX_BACKLOG))
            sock.setblocking(False)
    except BaseException:
        close_listeners(out, unlink=True)
        raise
    return out


def close_listeners(listeners: Iterable[socket.socket], *, unlink: bool) -> None:
    """Close; ``unlink`` also removes Unix socket files (only the owner, main, does that)."""
    for sock in listeners:
        if unlink and sock.family == socket.AF_UNIX:
            try:
                path = sock.getsockname()
                if isinstance(path, str) and path:
                    os.unlink(path)
            except OSError:
                pass
        sock.close()


def remove_stale_socket(path: str) -> None:
    """Unlink a Unix socket file nobody listens on; refuse one that is in use."""
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: left over by a crash
        return
    finally:
        probe.close()
    raise ServerHalt(f'Unix socket "{path}" is in use by another server')
