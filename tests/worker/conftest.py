from __future__ import annotations

from pathlib import Path

import pytest

from worker.model_loader import LoadedModel, load_model


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir: Path) -> LoadedModel:
    return load_model(str(tiny_model_dir), explicit=True, data_dir=tiny_model_dir.parent)
