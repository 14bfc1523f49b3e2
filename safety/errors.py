"""Typed refusals of plans and configurations, each naming the field path and the reason.

Pydantic's ``ValidationError`` is turned into one of these at the loading edge, so callers (the CLI maps
them to exit code 2) never match on pydantic's text, and a refused file tells the operator which field
to fix and why.
"""

from __future__ import annotations

from typing import Self

from pydantic import ValidationError

from firmware_bridge.errors import CartError


class FieldRefusal(ValueError):
    """Raised inside a model validator to refuse a value, naming the field below the model's location.

    A model-level validator would otherwise be reported at the model's path only; carrying ``field`` lets
    the loader name ``lesions.1.set_temp_c`` rather than ``lesions.1``.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class RefusedInput(CartError):
    """A plan or configuration that was refused; ``problems`` holds ``(field path, reason)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  {path}: {reason}" if path else f"  {reason}" for path, reason in problems)
        super().__init__(f"{source} refused:\n{lines}")

    @property
    def fields(self) -> tuple[str, ...]:
        """The refused field paths, in the order reported."""
        return tuple(path for path, _ in self.problems)

    @classmethod
    def from_validation_error(cls, source: str, exc: ValidationError) -> Self:
        problems: list[tuple[str, str]] = []
        for err in exc.errors():
            path = [str(part) for part in err["loc"]]
            reason = err["msg"].removeprefix("Value error, ")
            cause = err.get("ctx", {}).get("error")
            if isinstance(cause, FieldRefusal):
                path.append(cause.field)
                reason = cause.reason
            problems.append((".".join(path), reason))
        return cls(source, problems)


class PlanError(RefusedInput):
    """A lesion plan was refused (beyond a hard or configured limit, or inconsistent)."""


class ConfigError(RefusedInput):
    """A cart configuration was refused (it tried to loosen a hard limit, or is malformed)."""


class LimitExceeded(RefusedInput):
    """A :class:`~safety.config.SafetyLimits` value that loosens a hard limit, or is no limit at all.

    Raised by ``SafetyLimits`` itself (and again by the gate, which rebuilds the limits it is given), not
    only by the configuration loader: limits built in code, by ``control`` or anything hostile, must never
    reach the interlocks looser than the hard ones. ``field`` names the limit, ``limit`` the hard value.
    """

    def __init__(self, field: str, value: object, limit: float, reason: str) -> None:
        super().__init__("safety limits", [(field, reason)])
        self.field = field
        self.value = value
        self.limit = limit
        self.reason = reason
