"""The project's error tree: one root, typed by phase, always chained with ``from``.

Malformed wire bytes are *not* errors (they are counted and dropped by the parsers); exceptions are for
lost links, refused requests and programming errors.
"""

from __future__ import annotations


class CartError(Exception):
    """Root of every error the cart software raises on purpose."""


class LinkError(CartError):
    """A transport could not be opened, or disappeared while in use."""


class ProbeError(CartError):
    """The ultrasound probe refused a request, stalled, timed out or was unplugged."""


class CapabilityError(CartError):
    """Code without the output capability tried to enable RF output."""
