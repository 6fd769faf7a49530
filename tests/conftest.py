import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Small networks gain little from threads, and one thread keeps timings steady on shared CI."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
