"""
The standard library's functions and constants that the child reads per connection or per
statement, as Final names.  Compiled (mypyc), a module reads another compiled module's Final
name as a C variable, but an attribute of a plain or C module (``time.monotonic``,
``select.EPOLLIN``) by name, in that module's dict, on every use (docs/design.md).
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import ssl
import time
from typing import Final

monotonic: Final = time.monotonic
wall_time: Final = time.time
getppid: Final = os.getppid
os_read: Final = os.read
os_write: Final = os.write
urandom: Final = os.urandom
lockf: Final = fcntl.lockf
LOCK_EX: Final = fcntl.LOCK_EX
LOCK_UN: Final = fcntl.LOCK_UN
poll: Final = select.poll
POLLIN: Final = select.POLLIN
POLLRDHUP: Final = select.POLLRDHUP
EPOLLIN: Final = select.EPOLLIN
AF_UNIX: Final = socket.AF_UNIX
SOCK_STREAM: Final = socket.SOCK_STREAM
MSG_DONTWAIT: Final = socket.MSG_DONTWAIT
MSG_PEEK: Final = socket.MSG_PEEK
SOL_SOCKET: Final = socket.SOL_SOCKET
SO_RCVLOWAT: Final = socket.SO_RCVLOWAT
SSLSocket: Final = ssl.SSLSocket
