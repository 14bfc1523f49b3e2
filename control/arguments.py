"""Number types for the command lines, so that argparse refuses a bad number (exit 2, naming the option)
instead of a run carrying it on into a traceback (a negative seed) or into nonsense (NaN or negative
seconds, which loops would read as "never" or "at once")."""

from __future__ import annotations

import argparse
import math
import urllib.parse
from typing import Final


def count(text: str) -> int:
    """A whole number, zero or more: a seed, a row limit, a number of runs. Plain decimal digits only, as
    ``rfa sim --seed`` takes them (no sign, spaces or underscores, which ``int`` would let through)."""
    return _whole(text, 0)


def positive_count(text: str) -> int:
    """A whole number, one or more."""
    return _whole(text, 1)


def _whole(text: str, least: int) -> int:
    """A whole number of at least ``least``; the refusal names the least, so a user is never sent from one
    refusal to the next (-1: "give 0 or more", then 0: "give 1 or more")."""
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    value = int(text)
    if value < least:
        raise argparse.ArgumentTypeError(f"{value} is {'negative' if value < 0 else 'too small'}; give {least} or more")
    return value


def seconds(text: str) -> float:
    """A duration: a finite number of seconds greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0.0:
        raise argparse.ArgumentTypeError(f"{text} is not a duration; give a number of seconds greater than 0")
    return value


def url(text: str) -> str:
    """A pyserial URL or device path, not empty: an unset variable in ``--generator "$URL"`` must not quietly mean
    the in-process simulator (as leaving the option out does)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty URL; give a pyserial URL or device path (/dev/ttyUSB0, "
                                         "socket://HOST:PORT, a pty path), or leave the option out for the simulator")
    if text.startswith("tcp:"):  # the serving side's spelling: `rfa sim --serial tcp:PORT`, `--probe tcp:PORT`
        raise argparse.ArgumentTypeError(f"{text!r} is how `rfa sim` names a port to serve; to connect to it, give "
                                         f"socket://HOST:PORT (the URL `rfa sim` prints)")
    scheme, separator, _ = text.partition("://")
    if separator and scheme.lower() in _NETWORK_SCHEMES:
        try:
            port = urllib.parse.urlsplit(text).port
        except ValueError:  # not a number, or past 65535
            port = None
        if not port:
            raise argparse.ArgumentTypeError(f"{text!r} names no port (1 to 65535); give {scheme}://HOST:PORT")
    return text


_NETWORK_SCHEMES: Final = ("socket", "rfc2217")
"""pyserial's URL handlers that connect to a TCP port, which they need named (theirs fails with a TypeError)."""


FINAL_HASH_MIN_CHARS: Final = 16
"""The shortest final hash ``rfa record verify --expect`` takes: 64 bits, beyond any search for a rebuilt record
that ends on them, and short enough to copy into a patient's file by hand."""
SHA256_HEX_CHARS: Final = 64
"""A whole final hash (the record's chain is SHA-256)."""


def final_hash(text: str) -> str:
    """A record's final hash as written down: hexadecimal, its first 16 to all 64 characters (lower-cased)."""
    value = text.strip().lower()
    if not (FINAL_HASH_MIN_CHARS <= len(value) <= SHA256_HEX_CHARS and all(c in "0123456789abcdef" for c in value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a final hash: give its first {FINAL_HASH_MIN_CHARS} to "
                                         f"{SHA256_HEX_CHARS} hexadecimal characters")
    return value
