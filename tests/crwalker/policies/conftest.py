from __future__ import annotations

from pathlib import Path

import pytest

from data_scripts.mcr import load_raw

TOY = Path(__file__).resolve().parents[2] / "fixtures" / "mcr" / "toy"


@pytest.fixture(scope="session")
def toy():
    return load_raw(TOY)
