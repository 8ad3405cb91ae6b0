import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run on one torch thread: their tiny tensors gain nothing from more, and threads
    fighting over the CI machine's 2 cores (or other jobs) slowed small loops ~25x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def cache_dir(tmp_path_factory):
    """A per-session cache for prepared data (keeps ~/.cache untouched)."""
    return tmp_path_factory.getbasetemp() / "axon-cache"
