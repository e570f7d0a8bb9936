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
    # The target machines have 2 cores; more threads only add contention. A smaller
    # OMP_NUM_THREADS (tests run beside a long training run) is kept.
    torch.set_num_threads(min(2, int(os.environ.get("OMP_NUM_THREADS") or 2)))
    yield
    # `start_study` flushes denormals for its notebook's process; called in a test, it would
    # leave the setting on for the tests after it (the released CSNets' sub-1e-20 gammas read
    # as zeros then, and the pruning tests see channels that are not zero)
    torch.set_flush_denormal(False)


def fake_explorer_data(n: int = 2, c: int = 6, side: int = 32, seed: int = 0) -> dict:
    """Random data in the shape `sodlab.experiments.channel_explorer_data` returns."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return {"layer": "stage3", "channels": c, "images": rng.random((n, side, side, 3)), "saliency": rng.random((n, side, side)),
            "class_pred": np.array([1, 0])[:n], "activations_sod": rng.normal(size=(n, c, side // 4, side // 4)),
            "activations_cls": rng.normal(size=(n, c, side // 4, side // 4)), "importance_sod": rng.normal(size=(n, c)),
            "importance_cls": rng.normal(size=(n, c))}
