"""Where training batches come from: uint8 images in memory, or a DataLoader over image folders.

Both sources yield uint8 RGB batches ``[B, 3, S, S]`` (``S`` = the config's ``source_size``)
in an order fixed by the caller: the engine draws one seeded permutation per epoch and hands
each rank its slice of every global batch, so the position in a run is just
``(epoch, batch index)`` and resuming needs no sampler state. Lowering, augmentation and
preprocessing happen afterwards, batched, on the compute device.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mafer.datasets import DATASETS, get_dataset
from mafer.datasets.base import SKIP_HINT, FaceDataset
from mafer.errors import MaferError
from mafer.image import decode_bytes, read_bytes, resize_square
from mafer.train.config import TrainConfig

IN_MEMORY_LIMIT_BYTES = 4 * 1024**3  # auto in_memory: cache a set when its uint8 pixels fit in this


class BatchSource(Protocol):
    """Anything that turns lists of item indices into uint8 image batches and labels."""

    def __len__(self) -> int: ...

    def batches(self, index_batches: Sequence[Tensor], device: torch.device) -> Iterator[tuple[Tensor, Tensor]]: ...


class InMemorySource:
    """A whole split decoded once into one uint8 tensor ``[N, 3, S, S]``, kept on the compute device."""

    def __init__(self, images: Tensor, labels: Tensor, device: torch.device):
        # the cache is small by construction (see IN_MEMORY_LIMIT_BYTES), so it lives on the device
        # and a batch is one gather there, with no host-to-device copy per step
        self.images, self.labels = images.to(device), labels.to(device)

    @classmethod
    def from_dataset(cls, dataset: FaceDataset, size: int, device: torch.device) -> "InMemorySource":
        """``dataset`` decoded once at ``size`` px (`FaceDataset.load_uint8`)."""
        return cls(*dataset.load_uint8(size), device)

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, index_batches: Sequence[Tensor], device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
        for idx in index_batches:
            idx = idx.to(self.images.device)
            yield self.images[idx].to(device), self.labels[idx].to(device)


class FolderSource:
    """A split read from disk by DataLoader workers, each image resized like ``load_uint8(S)``."""

    def __init__(self, dataset: FaceDataset, size: int, workers: int):
        dataset.transform = lambda image: resize_square(image, size)
        self.dataset, self.workers = dataset, workers

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, index_batches: Sequence[Tensor], device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
        loader = DataLoader(self.dataset, batch_sampler=[idx.tolist() for idx in index_batches],
                            num_workers=self.workers, pin_memory=device.type == "cuda")
        with _bad_image_hint():
            for images, labels in loader:
                yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


class EncodedFiles(Dataset):
    """Item ``i`` -> (the encoded bytes of its image file, its label, the file's path)."""

    def __init__(self, dataset: FaceDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Tensor, int, str]:
        path = self.dataset.image_file(i)
        return read_bytes([path])[0], self.dataset.targets[i], path


def _as_lists(items: list[tuple]) -> tuple[list, ...]:
    return tuple(list(column) for column in zip(*items))


class DeviceDecodeSource:
    """A split read from disk as encoded bytes by DataLoader workers and decoded one batch at a
    time on the compute device (nvJPEG on CUDA), so CPU cores only read files.

    Images come out resized like ``load_uint8(S)`` (squashed to S x S as the authors' ``Resize``).
    """

    def __init__(self, dataset: FaceDataset, size: int, workers: int):
        self.dataset, self.size, self.workers = dataset, size, workers

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, index_batches: Sequence[Tensor], device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
        loader = DataLoader(EncodedFiles(self.dataset), batch_sampler=[idx.tolist() for idx in index_batches],
                            num_workers=self.workers, collate_fn=_as_lists)
        with _bad_image_hint():
            for data, labels, paths in loader:
                yield decode_bytes(data, self.size, device, names=paths), torch.tensor(labels, device=device)


@contextlib.contextmanager
def _bad_image_hint() -> Iterator[None]:
    """A bad image met while reading from disk: one line naming it and the option that skips such images.

    A DataLoader worker's error arrives with the worker's traceback in its message; the last
    line is the error itself.
    """
    try:
        yield
    except MaferError as exc:
        line = str(exc).strip().splitlines()[-1].removeprefix(f"{MaferError.__module__}.{MaferError.__name__}: ")
        raise MaferError(f"{line} ({SKIP_HINT} to skip and list such images)") from None


def open_split(cfg: TrainConfig, split: str) -> FaceDataset:
    """The dataset split a run trains or validates on (Oulu-CASIA: of fold ``cfg.fold``)."""
    options = {}
    if DATASETS[cfg.dataset].has_folds:
        if cfg.fold is None:
            raise MaferError(f"{cfg.dataset}: pass --fold K (1..folds, as the authors' best_model_ckp_fold_K.pt) to pick the cross-validation fold to train")
        options = dict(fold=cfg.fold, folds=cfg.folds, protocol=cfg.protocol)
        if cfg.order is not None:
            options["order"] = cfg.order
    return get_dataset(cfg.dataset, cfg.data_dir, split, skip_bad=cfg.skip_bad, **options)


def make_source(cfg: TrainConfig, dataset: FaceDataset, device: torch.device) -> BatchSource:
    """In memory when ``cfg.in_memory`` (auto: the uint8 pixels fit in 4 GiB), else from disk:
    on CUDA as encoded files decoded on the GPU, elsewhere decoded by the loader's workers."""
    in_memory = cfg.in_memory
    if in_memory is None:
        in_memory = len(dataset) * 3 * cfg.source_size**2 <= IN_MEMORY_LIMIT_BYTES
    if in_memory:
        return InMemorySource.from_dataset(dataset, cfg.source_size, device)  # decoding drops bad images under skip_bad
    if cfg.skip_bad:
        dataset.verify()  # decode once now, so a bad image is skipped instead of failing a batch mid-run
    if device.type == "cuda" and dataset.image_file(0) is not None:
        return DeviceDecodeSource(dataset, cfg.source_size, cfg.workers)
    return FolderSource(dataset, cfg.source_size, cfg.workers)


@dataclass
class TrainingData:
    """What a run trains and validates on: two batch sources and the facts the engine needs of them."""

    train: BatchSource
    val: BatchSource
    classes: list[str]
    mean_bgr: tuple[float, float, float]
    class_counts: list[int]  # training images per class, in class order (the CE weights)
    root: str  # named in error messages
    skipped: dict[str, list[str]] = field(default_factory=lambda: {"train": [], "val": []})  # split -> bad items left out under skip_bad


def open_training_data(cfg: TrainConfig, device: torch.device) -> TrainingData:
    """The training and validation splits of ``cfg`` as batch sources (see `make_source`)."""
    train_set, val_set = open_split(cfg, "train"), open_split(cfg, "val")
    classes = list(train_set.classes)
    if list(val_set.classes) != classes:
        raise MaferError(f"{val_set.root}: the validation split has classes {list(val_set.classes)[:5]}..., "
                         f"the training split {classes[:5]}...; expected the same classes in the same order")
    train, val = make_source(cfg, train_set, device), make_source(cfg, val_set, device)
    return TrainingData(train, val, classes, tuple(train_set.mean_bgr), list(train_set.class_counts().values()),
                        str(train_set.root), {"train": list(train_set.bad_items), "val": list(val_set.bad_items)})


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The order of the ``n`` training items in ``epoch``: a permutation fixed by ``(seed, epoch)``."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def rank_batches(order: Tensor, batch_size: int, rank: int, world_size: int) -> list[Tensor]:
    """This rank's slice of every full global batch of ``batch_size * world_size`` items (the rest dropped)."""
    global_batch = batch_size * world_size
    count = len(order) // global_batch
    return [order[b * global_batch + rank * batch_size: b * global_batch + (rank + 1) * batch_size]
            for b in range(count)]


def eval_batches(n: int, batch_size: int, rank: int, world_size: int) -> list[Tensor]:
    """This rank's share of ``0..n-1`` (every ``world_size``-th item), in batches; nothing repeated or dropped."""
    mine = torch.arange(rank, n, world_size)
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]


def micro_batches_per_epoch(n: int, batch_size: int, world_size: int, split_root: str) -> int:
    """Full global batches in an epoch; MaferError when the set is smaller than one."""
    count = n // (batch_size * world_size)
    if count == 0:
        raise MaferError(f"{split_root}: the training split has {n} images, fewer than one batch of "
                         f"{batch_size} x {world_size} process(es); lower --batch-size")
    return count


def steps_per_epoch(micro_batches: int, accum_steps: int) -> int:
    """Optimizer steps in an epoch (the last one may accumulate fewer batches)."""
    return math.ceil(micro_batches / accum_steps)
