import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def image() -> str:
    """The product image, built once per session by ./build.sh (Docker layer cache reused)."""
    from imagebuild import build_image

    return build_image()
