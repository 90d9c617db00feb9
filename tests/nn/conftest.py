import pytest

from pet_helpers import install_fallback_ops


@pytest.fixture(autouse=True)
def _neighbour_ops(monkeypatch):
    install_fallback_ops(monkeypatch)
    yield
