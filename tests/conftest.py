"""Shared fixtures. Reference data lives beside the checkout in ../shared/reference and is
never copied into the repository; tests that need it skip when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("SODLAB_REFERENCE", REPO.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE_DIR / "README.md").is_file():
        pytest.skip(f"reference data not found at {REFERENCE_DIR}")
    return REFERENCE_DIR


@pytest.fixture
def repo_env() -> dict[str, str]:
    """The environment for a Python subprocess that imports this checkout's sodlab."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(autouse=True)
def _two_threads():
    # The target machines have 2 cores; more threads only add contention.
    torch.set_num_threads(2)
    yield
