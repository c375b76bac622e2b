"""Fixtures of the end-to-end tier (the harness is in harness.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from harness import E2E_PYTHON, FOLDERS


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four tiny models, made by the product's own random-model command."""
    if not E2E_PYTHON.exists():
        pytest.fail(f"{E2E_PYTHON} not found: tests/run.sh creates the e2e venv (SGLang from PyPI)")
    root = tmp_path_factory.mktemp("models")
    for key, folder in FOLDERS.items():
        proc = subprocess.run(
            [str(E2E_PYTHON), "-m", "glm_image_sglang", "random-model", key, str(root / folder)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    return root
