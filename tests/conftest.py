import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def cache_dir(tmp_path_factory):
    """A per-session cache for prepared data (keeps ~/.cache untouched)."""
    return tmp_path_factory.getbasetemp() / "axon-cache"
