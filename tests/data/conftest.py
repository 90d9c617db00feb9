"""Fixtures of the data tests: a local QM9 root (see qm9_fixture.py)."""
import pytest
from qm9_fixture import write_qm9_raw


@pytest.fixture
def qm9_root(tmp_path, monkeypatch):
    """A QM9 root holding the local raw files; any download attempt fails the test."""
    import torch_geometric.datasets.qm9 as pyg_qm9

    def _no_download(*args, **kwargs):
        raise AssertionError("the QM9 fixture must not download anything")

    monkeypatch.setattr(pyg_qm9, "download_url", _no_download)
    root = tmp_path / "qm9"
    write_qm9_raw(str(root / "raw"))
    return str(root)
