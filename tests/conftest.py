"""Shared test setup."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module of tiny networks (``pytestmark =
    pytest.mark.usefixtures("one_thread")``): intra-op threads only cost time there, and on a
    shared 2-core machine they oversubscribe it (one file ran 10x slower with them). The
    modules with larger networks keep torch's threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
