import os

import pytest
import torch

# Tests run on the CPU with a fixed thread count so timings don't matter and results repeat.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def clip():
    from unclip_lib import load_clip

    return load_clip("shapes")


@pytest.fixture(scope="session")
def evaluator():
    from unclip_lib import load_evaluator

    return load_evaluator("shapes")
