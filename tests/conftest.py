import pytest
import torch

DTYPES = [torch.float32, torch.float64]
DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _fixed_seed():
    """Every test starts from the same seed, so failures reproduce."""
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: thread start-up costs more than the work on a shared 2-core machine.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
