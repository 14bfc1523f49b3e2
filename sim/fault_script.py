"""The fault script's file format (``--faults FILE``), shared by its tables: the generator's ``[[fault]]``
(:mod:`sim.generator.faults`), the probe's ``[[probe_fault]]`` (:mod:`sim.probe.faults`) and the link's ``[link]``
(:mod:`sim.link_faults`).

Strict, so that a typo never scripts a fault nobody wrote, nor drops one somebody did: a table of another name,
an unknown field, a kind that is not one, a time or value that is not a finite number is refused with a
``ValueError`` naming the file, the entry and the reason (the commands exit 2 on it).
"""

from __future__ import annotations

import enum
import math
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

_Entry = TypeVar("_Entry")
_Kind = TypeVar("_Kind", bound=enum.StrEnum)
SCRIPT_TABLES: Final = ("fault", "probe_fault", "link")
"""What a fault script holds: [[fault]] tables (the generator), [[probe_fault]] tables (the probe), [link]."""


def script_tables(path: Path, name: str, parse: Callable[[dict[str, object]], _Entry]) -> list[_Entry]:
    """Each ``[[name]]`` table of the fault script at ``path``, as ``parse`` reads it. A file that cannot be read,
    that holds a table of another name (a misspelt ``[[faults]]``), or an entry ``parse`` refuses (``KeyError``
    for a missing field, ``ValueError``, ``TypeError``) raises ``ValueError`` naming the file, the entry and the
    reason, so that the command refuses the script with exit 2."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read fault script {path}: {exc}") from exc
    unknown_tables = set(data) - set(SCRIPT_TABLES)
    if unknown_tables:
        raise ValueError(f"{path}: unknown table(s) {sorted(unknown_tables)}: a fault script holds [[fault]] "
                         "and [[probe_fault]] tables and an optional [link] table")
    entries = data.get(name, [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ValueError(f"{path}: '{name}' must be [[{name}]] tables (an array of tables)")
    parsed: list[_Entry] = []
    for i, entry in enumerate(entries):
        try:
            parsed.append(parse(entry))
        except (KeyError, ValueError, TypeError) as exc:
            reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(f"{path}: {name}[{i}]: {reason}") from exc
    return parsed


def check_fields(entry: dict[str, object], fields: set[str]) -> None:
    unknown = set(entry) - fields
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}")


def optional_number(entry: dict[str, object], field: str) -> float | None:
    """The entry's ``field`` as :func:`toml_number` reads it, or ``None`` where it is left out."""
    return None if entry.get(field) is None else toml_number(entry[field], field)


def toml_number(value: object, field: str) -> float:
    """A number as TOML writes one (an integer or a float): not ``true``, nor a number in quotes, which ``float``
    would take for 1.0 or read, so that a typo would script a fault nobody wrote."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field}: {value!r} is not a number")
    return float(value)


def check_timing(at_s: float, duration_s: float | None) -> None:
    """A scripted fault's times: finite, ``at_s >= 0`` and ``duration_s > 0`` (``None``: until the end)."""
    if not (math.isfinite(at_s) and at_s >= 0) or (
            duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0)):
        raise ValueError(f"fault timing must be finite, at_s >= 0 and duration_s > 0 (at_s={at_s}, "
                         f"duration_s={duration_s})")


def script_kind(value: object, kinds: type[_Kind], noun: str) -> _Kind:
    """The member of ``kinds`` whose value ``value`` is; ``ValueError`` listing them all if none is."""
    for kind in kinds:
        if value == kind.value:
            return kind
    listed = ", ".join(kind.value for kind in kinds)
    raise ValueError(f"kind: {value!r} is not a {noun}; the kinds are {listed}")
