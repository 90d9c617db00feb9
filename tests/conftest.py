import pytest
import torch

DTYPES = [torch.float32, torch.float64]
DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _fixed_seed():
    """Every test starts from the same seed, so failures reproduce."""
    torch.manual_seed(0)
    yield
