"""SE-ResNet-50 (VGGFace2) as the MAFER authors compute it, its preprocessing, and safe weight I/O.

- :func:`create_model` — the architecture (``arch``): ``"senet50"`` (the paper's backbone) or
  ``"senet_tiny"`` (CPU demo);
- :func:`preprocess` — RGB uint8 -> BGR float minus the dataset mean (the model's input);
- :func:`load_pretrained` — the authors' checkpoints, the VGGFace2 pickle, the MMdnn model
  and this project's checkpoints, read without executing code from the file;
- :func:`save_checkpoint`, :func:`load_checkpoint`, :func:`model_from_checkpoint`.
"""

from mafer.models.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from mafer.models.preprocess import preprocess
from mafer.models.senet import SENet, arch_names, create_model, unwrap_model
from mafer.models.weights import WeightFile, load_pretrained, read_weight_file

__all__ = [
    "SENet",
    "WeightFile",
    "arch_names",
    "create_model",
    "load_checkpoint",
    "load_pretrained",
    "model_from_checkpoint",
    "preprocess",
    "read_weight_file",
    "save_checkpoint",
    "unwrap_model",
]
