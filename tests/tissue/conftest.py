"""Shared fixtures of the tissue tests: compile the kernels once per session, before any run."""

from __future__ import annotations

import pytest

from sim.tissue.kernels import warm_up_kernels


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels() -> None:
    warm_up_kernels()
