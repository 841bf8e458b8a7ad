"""Tests that need a tool a developer's machine may lack (podman, a peer engine from the package
registry): skipped there with the reason, but failed where ``BNN_LAB_REQUIRE_TOOLS=1`` (``.ci/run``
sets it), so that CI can never pass with such a test skipped."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

ENV = "BNN_LAB_REQUIRE_TOOLS"


def unavailable(reason: str) -> NoReturn:
    """Skip the calling test for ``reason``; fail it instead where every tool is required."""
    if os.environ.get(ENV) == "1":
        pytest.fail(f"{ENV}=1 and this test cannot run: {reason}")
    pytest.skip(reason)
