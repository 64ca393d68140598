from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def real_home(tmp_path_factory) -> Path:
    """One store for all integration tests (set KOGATA_TEST_HOME to reuse pulls between runs)."""
    home = Path(os.environ.get("KOGATA_TEST_HOME") or tmp_path_factory.mktemp("kogata-home"))
    os.environ["KOGATA_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def smollm2(real_home):
    from kogata.artifacts.importer import pull
    from kogata.artifacts.store import Store

    return pull(Store(), "smollm2-135m", log=lambda m: None)
