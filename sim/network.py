"""Where the simulator's TCP ports listen (``rfa sim --bind``), and how their URLs name them."""

from __future__ import annotations

import ipaddress
import socket
from typing import Final

LOOPBACK: Final = "127.0.0.1"
"""Where the TCP ports listen unless ``rfa sim --bind`` says otherwise: this machine only. The simulated generator
takes commands (output on, up to its caps) from any host that connects, without authentication, and on a network its
port looks like a real generator's serial-over-TCP bridge; the probe service answers anyone's USB calls. Reaching them
from another machine is a choice to make, not a default."""
EVERY_INTERFACE: Final = frozenset({"0.0.0.0", ""})


def url_host(bind: str) -> str:
    """The host part of a URL for a port listening on ``bind``: the address or name as given, or this machine's host
    name for every interface (``0.0.0.0`` in a URL reaches nothing from another machine)."""
    return socket.gethostname() if bind in EVERY_INTERFACE else bind


def is_loopback(bind: str) -> bool:
    """Whether ``bind`` keeps a port to this machine (127.0.0.0/8, ::1, ``localhost``)."""
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return bind == "localhost"
