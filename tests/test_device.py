"""Device choice shared by training, evaluation and prediction."""

import pytest
import torch

from mafer.device import pick_device
from mafer.errors import MaferError


def test_auto_picks_cpu_without_a_gpu_and_cpu_is_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(MaferError, match="no CUDA GPU"):
        pick_device("cuda")
    with pytest.raises(MaferError, match="cuda:1"):
        pick_device("cuda:1")


def test_cpu_flushes_denormals_to_zero():
    pick_device("cpu")
    tiny = torch.tensor([1e-40], dtype=torch.float32)  # a denormal float32
    assert (tiny * 1.0).item() == 0.0
