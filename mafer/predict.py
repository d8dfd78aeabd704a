"""Expression probabilities for face images (``mafer predict``).

Each face crop, of any size, gray or colour, is turned upright by its EXIF orientation (as a
phone stores photos) and decoded to uint8 RGB as a viewer shows it (`mafer.image.decode_file`:
16-bit scaled, alpha composed onto white, CMYK and palette converted; an image over the
decompression-bomb limit refused with its size), goes through the eval
transform of the dataset the checkpoint was fine-tuned on (at the checkpoint's input size),
is preprocessed with the checkpoint's mean and classified; the softmax gives the probabilities.
Folders are searched recursively for image files and processed in batches.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import torch

from mafer.datasets import DATASETS
from mafer.datasets.info import EXPRESSION_DATASETS
from mafer.datasets.base import IMAGE_EXTENSIONS
from mafer.errors import MaferError
from mafer.evaluate import checkpoint_image_size, load_classifier
from mafer.image import decode_file
from mafer.models import preprocess
from mafer.device import pick_device
from mafer.transforms import eval_transform


def collect_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files named directly, plus image files (by extension) found recursively in folders, sorted per folder."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
            if not found:
                raise MaferError(f"{item}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
            paths.extend(found)
        elif item.is_file():
            paths.append(item)
        else:
            raise MaferError(f"{item}: no such file or folder; expected a face image or a folder of them")
    return paths


def checkpoint_dataset(meta: dict, checkpoint: str | os.PathLike) -> str:
    """The dataset whose eval transform the checkpoint expects: its config's, else the one with its classes."""
    name = (meta.get("config") or {}).get("dataset")
    if name in DATASETS:
        return name
    matches = [n for n, info in DATASETS.items() if list(info.classes) == list(meta["class_names"])]
    if len(matches) == 1:
        return matches[0]
    raise MaferError(f"{checkpoint}: cannot tell which dataset the checkpoint was fine-tuned on "
                     f"(classes {list(meta['class_names'])}); expected a checkpoint written by mafer step2")


class Predictor:
    """A checkpoint ready to classify face images: ``predictor(paths) -> list[dict]``.

    ``dataset`` names the fine-tuning set of checkpoints that do not record it (the authors' release).
    """

    def __init__(self, checkpoint: str | os.PathLike, device: str = "auto", image_size: int | None = None,
                 dataset: str | None = None):
        self.device = pick_device(device)
        self.model, meta = load_classifier(checkpoint, self.device, dataset)
        self.classes: list[str] = list(meta["class_names"])
        self.mean_bgr = meta["mean_bgr"]
        self.dataset = checkpoint_dataset(meta, checkpoint)
        self.image_size = checkpoint_image_size(meta, image_size)
        self.transform = eval_transform(self.dataset, self.image_size)

    @torch.no_grad()
    def probabilities(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Softmax ``[N, C]`` of uint8 RGB images ``[3, H, W]`` of any sizes."""
        batch = torch.stack([self.transform(image) for image in images]).to(self.device)
        return torch.softmax(self.model(preprocess(batch, self.mean_bgr)).float(), dim=1).cpu()

    def __call__(self, paths: Sequence[str | os.PathLike], batch_size: int = 32) -> list[dict]:
        """``[{"path", "probabilities": {class: p}, "prediction"}]`` for each image file, in order."""
        results = []
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            probs = self.probabilities([decode_file(p, orient=True) for p in chunk])
            for path, row in zip(chunk, probs.tolist()):
                results.append({"path": str(path), "probabilities": dict(zip(self.classes, row)),
                                "prediction": self.classes[max(range(len(row)), key=row.__getitem__)]})
        return results


def predict_images(inputs: Iterable[str | os.PathLike], checkpoint: str | os.PathLike, device: str = "auto",
                   batch_size: int = 32, image_size: int | None = None, dataset: str | None = None) -> list[dict]:
    """Expression probabilities for image files and folders of images (see ``Predictor``)."""
    paths = collect_images(inputs)
    return Predictor(checkpoint, device, image_size, dataset)(paths, batch_size)


def format_text(results: Sequence[dict]) -> str:
    """One line per image: path, then the classes by decreasing probability."""
    lines = []
    for r in results:
        ranked = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])
        lines.append(f"{r['path']}: " + ", ".join(f"{name} {p:.1%}" for name, p in ranked))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="face images or folders of them")
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint written by mafer step2")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--image-size", type=int, help="network input size (default: the checkpoint's)")
    parser.add_argument("--dataset", choices=EXPRESSION_DATASETS,
                        help="for checkpoints without class names (the authors' release): the dataset "
                             "they were fine-tuned on")


def run(args: argparse.Namespace) -> int:
    results = predict_images(args.inputs, args.checkpoint, args.device, args.batch_size, args.image_size,
                             args.dataset)
    print(json.dumps(results, indent=2) if args.json else format_text(results))
    return 0
