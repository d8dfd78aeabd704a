"""Evaluate a fine-tuned checkpoint at several test resolutions (``mafer evaluate``).

For each resolution r the test faces are lowered as in step 1 of the paper, with the authors'
PIL lowering (`mafer.image.lower_pil` on the original-size image: shorter side to r, back to
the original size), and only then go through the dataset's eval transform (the authors' OpenCV
``Resize`` + ``CenterCrop``, on the CPU whatever the device, so that CPU and GPU runs get the same
inputs); ``native`` leaves them alone.
Per resolution we report accuracy, mean per-class accuracy (RAF-DB's "average accuracy"),
macro F1, the authors' score 0.33*acc + 0.67*F1, the confusion matrix, the number of images
and a bootstrap 95 % interval for accuracy. ``--dump-predictions FILE`` also writes one CSV row
per test image and resolution (``write_predictions``), to compare with another implementation
image by image.

``--bn-recalibrated`` adds a diagnostic that is *not* the paper's protocol: at each lowered
resolution the network's BatchNorm statistics are re-estimated on that resolution's test faces
(their images only, never their labels) before testing, so that a model whose features survive
the lowering but whose normalisation does not (every prediction collapsing onto one class) can be
told apart from one that has lost the information.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from mafer.datasets import FaceDataset, dataset_info, get_dataset
from mafer.datasets.info import EXPRESSION_DATASETS, OULU_PROTOCOLS
from mafer.errors import MaferError
from mafer.metrics import SCALAR_METRICS, bootstrap_accuracy_ci, classification_metrics
from mafer.models import model_from_checkpoint, preprocess
from mafer.models.weights import AUTHORS_FORMAT
from mafer.released import AUTHORS_FOLDS, fold_checkpoints, fold_in_name
from mafer.image import lower_pil
from mafer.device import pick_device
from mafer.transforms import eval_transform

# the test resolutions wherever none are given: `mafer evaluate`, the functions below and the paper and
# released profiles (a test holds those to it); demo and smoke test a subset, for time
DEFAULT_RESOLUTIONS: tuple[str | int, ...] = ("native", 8, 16, 24, 32, 48, 64)
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def parse_resolutions(text: str | Iterable[str | int]) -> list[str | int]:
    """``"native,8,16"`` (or a list) -> ``["native", 8, 16]``; MaferError on anything else."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str | int] = []
    for item in items:
        item = str(item).strip()
        if item == "native":
            out.append("native")
        elif item.isdigit() and int(item) > 0:
            out.append(int(item))
        else:
            raise MaferError(f"resolution {item!r}: expected 'native' or a positive number of pixels, "
                             f"e.g. native,8,16,32")
    if not out:
        raise MaferError("no test resolution given; expected e.g. native,8,16,32")
    return list(dict.fromkeys(out))


class LoweredEvalTransform:
    """Lower a uint8 ``[3, H, W]`` face to ``resolution`` (``native``: unchanged), then the eval transform.

    A class rather than a closure so that DataLoader workers can pickle it.
    """

    def __init__(self, dataset: str, image_size: int, resolution: str | int = "native"):
        self.resolution = resolution
        self.transform = eval_transform(dataset, image_size)

    def __call__(self, image: Tensor) -> Tensor:
        if self.resolution != "native":
            image = lower_pil(image, int(self.resolution))
        return self.transform(image)


def load_classifier(checkpoint: str | os.PathLike, device: torch.device,
                    dataset: str | None = None) -> tuple[torch.nn.Module, dict]:
    """The checkpoint's model in eval mode on ``device`` and its metadata (class names, mean, config).

    Files without class names (the authors' released checkpoints) are taken as classifiers of
    ``dataset``, with its class order and mean, when their number of outputs matches it.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise MaferError(f"{path}: checkpoint not found; expected a .pt file written by mafer step2")
    model, meta = model_from_checkpoint(path, device=device)
    if not meta.get("class_names") and dataset is not None:
        info = dataset_info(dataset)
        if meta["num_classes"] == info.num_classes:
            meta = {**meta, "class_names": list(info.classes), "mean_bgr": list(info.mean_bgr),
                    "config": {"dataset": dataset}}
    if not meta.get("class_names"):
        raise MaferError(f"{path}: a {meta.get('format', 'weight')} file with {meta['num_classes']} outputs and no "
                         f"class names; expected an expression classifier written by mafer step2"
                         + (f" or fine-tuned on {dataset}" if dataset else ""))
    return model.eval(), meta


def checkpoint_image_size(meta: dict, image_size: int | None = None) -> int:
    """``image_size`` when given, else the one the checkpoint was trained at (224 if unrecorded)."""
    if image_size is not None:
        return int(image_size)
    return int((meta.get("config") or {}).get("image_size") or 224)


def check_fold_rule(meta: dict, checkpoint: str | os.PathLike, fold: int | None, folds: int | None,
                    protocol: str | None) -> tuple[str, int]:
    """``(protocol, folds)`` to test ``checkpoint`` on Oulu-CASIA with: those given, or (None) the
    ones it was trained with (protocol ``image`` and 10 folds where it does not say).

    A network trained on fold k of one fold rule has the rest of the images in its training
    part, so testing it on another rule, or another fold, tests it partly on its training images
    and inflates its accuracy. This project's checkpoints record ``fold``, ``folds`` and
    ``protocol`` in their config; the authors' (format ``mafer-authors``) were trained under
    protocol ``authors`` with 10 folds, fold k named in the file (``best_model_ckp_fold_<k>.pt``).
    MaferError naming the checkpoint when ``fold``, ``folds`` or ``protocol`` differ from those.
    """
    if meta.get("format") == AUTHORS_FORMAT:
        recorded: dict[str, Any] = {"protocol": "authors", "folds": AUTHORS_FOLDS}
        named = fold_in_name(Path(checkpoint).name)
        if named is not None:
            recorded["fold"] = named
    else:
        config = meta.get("config") or {}
        recorded = {k: config[k] for k in ("protocol", "folds", "fold") if config.get(k) is not None}
    asked = {"fold": fold, "folds": folds or recorded.get("folds", AUTHORS_FOLDS),
             "protocol": protocol or recorded.get("protocol", "image")}
    wrong = [f"{k} {recorded[k]} (asked: {asked[k]})" for k in recorded if asked[k] != recorded[k]]
    if wrong:
        raise MaferError(f"{checkpoint}: trained on Oulu-CASIA {', '.join(wrong)}; under another fold rule or fold "
                         "its test part would hold its own training images; leave out --protocol, --folds and --fold "
                         "to use the checkpoint's own, or give them as trained (folds count from 1)")
    return asked["protocol"], asked["folds"]


def check_classes(meta: dict, dataset: FaceDataset, checkpoint: str | os.PathLike) -> None:
    """MaferError when the checkpoint predicts other classes (or another order) than ``dataset`` has."""
    if list(meta["class_names"]) != list(dataset.classes):
        raise MaferError(f"{checkpoint}: checkpoint predicts {list(meta['class_names'])} but {dataset.name} "
                         f"has {list(dataset.classes)}; expected a checkpoint fine-tuned on {dataset.name}")


def open_test_data(dataset: str, data_dir: str | os.PathLike, split: str, fold: int | None, folds: int,
                   protocol: str, skip_bad: bool = False, order: str | os.PathLike | None = None) -> FaceDataset:
    """The split to evaluate; with ``skip_bad`` every image is decoded once and unreadable ones dropped.
    ``order``: Oulu-CASIA protocol ``authors`` only, the authors' database file (see `mafer.datasets.OuluCASIA`)."""
    options = {} if order is None else {"order": order}
    data = get_dataset(dataset, data_dir, split, fold=fold, folds=folds, protocol=protocol, skip_bad=skip_bad,
                       **options)
    if skip_bad:
        data.verify()
    return data


def class_interleaved(targets: Sequence[int], max_images: int | None) -> list[int] | None:
    """Indices of at most ``max_images`` items taken from every class in turn (first of each class,
    then second, ...), in dataset order; None when ``max_images`` is None or covers every item.

    A capped run (``mafer reproduce --cap``) tests this subset, so that every class with an image
    still appears in the confusion matrix. MaferError when ``max_images`` is below 1.
    """
    if max_images is None or max_images >= len(targets):
        return None
    if max_images < 1:
        raise MaferError(f"max_images must be at least 1, got {max_images}")
    rank, seen = [], {}  # rank[i]: how many items of the same class come before item i
    for t in map(int, targets):
        rank.append(seen.get(t, 0))
        seen[t] = rank[-1] + 1
    order = sorted(range(len(targets)), key=lambda i: (rank[i], int(targets[i])))
    return sorted(order[:max_images])


def limited(data: FaceDataset, max_images: int | None) -> Dataset:
    """``data`` itself, or the `class_interleaved` subset of it when ``max_images`` is set."""
    index = class_interleaved(data.targets, max_images)
    return data if index is None else Subset(data, index)


def make_loader(dataset: Dataset, batch_size: int, workers: int, device: torch.device) -> DataLoader:
    """An ordered DataLoader over ``dataset`` (its transform already set)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=False)


@torch.no_grad()
def run_model(model: torch.nn.Module, loader: Iterable[tuple[Tensor, Any]], mean_bgr: Sequence[float],
              device: torch.device, features: bool = False) -> tuple[Tensor, Tensor]:
    """Logits (or pooled features with ``features=True``) and labels of every ``(uint8 images
    [B, 3, H, W], labels)`` batch of ``loader`` (a DataLoader or a list), on the CPU."""
    return run_models([(model, mean_bgr)], loader, device, features)[0]


@torch.no_grad()
def run_models(models: Sequence[tuple[torch.nn.Module, Sequence[float]]], loader: Iterable[tuple[Tensor, Any]],
               device: torch.device, features: bool = False) -> list[tuple[Tensor, Tensor]]:
    """`run_model` of each ``(model, mean_bgr)`` over one pass of ``loader``: every batch is
    read once and given to each network in turn."""
    outputs: list[list[Tensor]] = [[] for _ in models]
    labels = []
    for images, targets in loader_batches(loader):
        images = images.to(device, non_blocking=True)
        for kept, (model, mean_bgr) in zip(outputs, models):
            x = preprocess(images, mean_bgr)
            kept.append((model.forward_features(x) if features else model(x)).float().cpu())
        labels.append(targets)
    return [(torch.cat(kept), torch.cat(labels)) for kept in outputs]


def read_batches(loader: DataLoader) -> list[tuple[Tensor, Tensor]]:
    """Every ``(images, labels)`` batch of ``loader`` in memory (uint8 images: a 3,000-face test set
    at 224 px is about 450 MB)."""
    return list(loader_batches(loader))


def loader_batches(loader: Iterable[tuple[Tensor, Any]]) -> Iterator[tuple[Tensor, Tensor]]:
    """The ``(images, labels tensor)`` batches of ``loader`` (a DataLoader or a list of batches); a
    MaferError raised in a DataLoader worker arrives as its own one-line message."""
    try:
        for images, targets in loader:
            yield images, torch.as_tensor(targets)
    except MaferError as exc:
        raise MaferError(worker_error_message(exc)) from None


@torch.no_grad()
def bn_recalibrated(model: torch.nn.Module, batches: Iterable[tuple[Tensor, Tensor]], mean_bgr: Sequence[float],
                    device: torch.device) -> torch.nn.Module:
    """A copy of ``model`` (in eval mode) whose BatchNorm running mean and variance are the averages,
    over ``batches`` (``(uint8 images [N, 3, H, W], labels)``; the labels are not used), of each
    batch's mean and unbiased variance (PyTorch's cumulative average, ``momentum=None``).

    The diagnostic of AdaBN (Li et al., 2016), not the paper's protocol: everything else in the
    network is unchanged, and ``model`` itself is left as it was."""
    copied = bn_measuring_copy(model)
    run_model(copied, batches, mean_bgr, device)
    return copied.eval()


def bn_measuring_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose BatchNorm layers start empty and average what they see (train mode,
    ``momentum=None``); the rest in eval mode. Call ``.eval()`` on it once it has seen the images."""
    copied = copy.deepcopy(model).eval()
    for m in copied.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over every batch, whatever their number
            m.train()
    return copied


def worker_error_message(exc: MaferError) -> str:
    """The original message of a MaferError re-raised by a DataLoader worker (which prepends a traceback)."""
    text = str(exc)
    marker = "MaferError: "
    return text[text.rindex(marker) + len(marker):].strip() if "Original Traceback" in text and marker in text else text


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


PREDICTION_COLUMNS = ("fold", "resolution", "index", "item", "label", "prediction")
# one checkpoint's test: (Oulu-CASIA fold or None, test items, [(resolution, logits [N, C], labels [N])])
Tested = tuple[int | None, Sequence[str], Sequence[tuple[str | int, Tensor, Tensor]]]


def write_predictions(path: str | os.PathLike, classes: Sequence[str], tested: Sequence[Tested]) -> Path:
    """Write one CSV row per checkpoint, test image and resolution: ``fold, resolution, index, item,
    label, prediction, logit_<class>...``.

    ``fold`` is the Oulu-CASIA fold (1..folds) whose checkpoint and test part the row belongs to,
    empty for a fixed test split; ``index`` the image's position in that test part; ``item`` the
    image file, or ``file.csv:line`` for FER2013; ``label`` and ``prediction`` class indices in
    ``classes`` order; logits float32 printed with ``repr``. ``tested`` holds, per checkpoint,
    ``(fold, items, [(resolution, logits [N, C], labels [N]), ...])`` in dataset order.
    MaferError when the file cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(list(PREDICTION_COLUMNS) + [f"logit_{name}" for name in classes])
            for fold, items, per_resolution in tested:
                for resolution, logits, labels in per_resolution:
                    predictions = logits.argmax(1).tolist()
                    for i, (item, label, pred, row) in enumerate(zip(items, labels.tolist(), predictions,
                                                                     logits.tolist())):
                        writer.writerow(["" if fold is None else fold, resolution, i, item, label, pred]
                                        + [repr(float(v)) for v in row])
    except OSError as exc:
        raise MaferError(f"{path}: cannot write the predictions ({exc.strerror or exc}); "
                         "expected a writable file path for --dump-predictions") from None
    return path


def evaluate_checkpoint(dataset: str, data_dir: str | os.PathLike, checkpoint: str | os.PathLike,
                        split: str = "test", fold: int | None = None, folds: int | None = None,
                        protocol: str | None = None,
                        resolutions: Iterable[str | int] = DEFAULT_RESOLUTIONS, device: str = "auto",
                        image_size: int | None = None, batch_size: int = 64, workers: int | None = None,
                        model_label: str | None = None, skip_bad: bool = False,
                        dump_predictions: str | os.PathLike | None = None, max_images: int | None = None,
                        order: str | os.PathLike | None = None, bn_recalibration: bool = False) -> dict:
    """Metrics of ``checkpoint`` on ``split`` of ``dataset`` at each test resolution.

    Oulu-CASIA: ``fold`` (1..folds) of ``folds`` under ``protocol`` (None: those the checkpoint
    was trained with, ``authors`` and 10 for the authors' files, else ``image`` and 10; ``order``: see
    `mafer.datasets.OuluCASIA`); MaferError when the checkpoint records another fold rule than the
    one asked for (see `check_fold_rule`), since its test part would hold its training images.

    Returns ``{"dataset", "checkpoint", "model", "classes", "split", "fold", "folds", "protocol",
    "fold_order", "image_size", "bootstrap", "resolutions": {"native" | "8" | ...: {"accuracy",
    "mean_class_accuracy", "macro_f1", "score", "confusion_matrix", "n", "accuracy_ci", "predictions"}},
    "labels", "seed"}``: ``labels`` and each resolution's ``predictions`` are the true and the
    predicted class index of every test image, in the dataset's fixed order (what the paired
    comparisons of `mafer.aggregate.compare` pair); ``seed`` is the training seed in the
    checkpoint's config (None if unrecorded).
    The input size comes from the checkpoint's config unless ``image_size`` is given; the
    mean subtracted is the checkpoint's. With ``skip_bad`` unreadable images are left out
    (after one decoding pass) and listed under ``bad_items``; otherwise they raise MaferError.
    With ``dump_predictions`` the per-image predictions and logits go to that CSV
    (``write_predictions``).
    ``max_images`` (a capped run) tests only that many images, every class in turn (see
    `class_interleaved`), and is recorded under ``max_images`` (None: every image).
    With ``bn_recalibration`` each resolution also has ``bn_recalibrated``: ``accuracy``,
    ``mean_class_accuracy``, ``macro_f1``, ``score`` and ``n`` of the network with its BatchNorm
    statistics re-estimated on that resolution's test images (`bn_recalibrated`; a diagnostic, not
    the paper's protocol). At ``native`` these are the plain metrics: the network's statistics
    were estimated at that resolution in training.
    """
    result, tested = _evaluate(dataset, data_dir, checkpoint, split, fold, folds, protocol,
                               parse_resolutions(resolutions), pick_device(device), image_size, batch_size, workers,
                               model_label, skip_bad, max_images, order, keep_logits=dump_predictions is not None,
                               bn_recalibration=bn_recalibration)
    if dump_predictions is not None:
        write_predictions(dump_predictions, result["classes"], [tested])
    return result


def open_checkpoint_and_data(dataset: str, data_dir: str | os.PathLike, checkpoint: str | os.PathLike, split: str,
                             fold: int | None, folds: int | None, protocol: str | None, dev: torch.device,
                             skip_bad: bool = False, order: str | os.PathLike | None = None,
                             opened: dict[tuple[str | None, int | None], FaceDataset] | None = None,
                             ) -> tuple[torch.nn.Module, dict, FaceDataset, str | None, int | None]:
    """What testing ``checkpoint`` on ``split`` of ``dataset`` needs, checked before any image is
    run: ``(model, meta, data, protocol, folds)``, the network on ``dev`` in eval mode and its
    metadata (`load_classifier`), the split (`open_test_data`), and for a dataset with folds the
    protocol and fold count it is tested under (`check_fold_rule`; None otherwise).
    ``opened`` (``{(protocol, folds): split}``) keeps the splits opened for earlier checkpoints
    of the same call, so that checkpoints under one fold rule share one.

    Raises MaferError for a checkpoint that is not a classifier of ``dataset``, one tested on
    folds other than its own, or classes that differ from the split's (`check_classes`)."""
    model, meta = load_classifier(checkpoint, dev, dataset)
    if dataset_info(dataset).has_folds:
        protocol, folds = check_fold_rule(meta, checkpoint, fold, folds, protocol)
    else:
        protocol = folds = None
    opened = {} if opened is None else opened
    if (protocol, folds) not in opened:
        opened[protocol, folds] = open_test_data(dataset, data_dir, split, fold, folds or AUTHORS_FOLDS,
                                                 protocol or "image", skip_bad, order)
    data = opened[protocol, folds]
    check_classes(meta, data, checkpoint)
    return model, meta, data, protocol, folds


def _evaluate(dataset: str, data_dir: str | os.PathLike, checkpoint: str | os.PathLike, split: str,
              fold: int | None, folds: int | None, protocol: str | None, resolutions: list[str | int],
              dev: torch.device,
              image_size: int | None, batch_size: int, workers: int | None, model_label: str | None,
              skip_bad: bool, max_images: int | None, order: str | os.PathLike | None,
              keep_logits: bool, bn_recalibration: bool = False) -> tuple[dict, Tested]:
    """`evaluate_checkpoint`'s result and, with ``keep_logits``, the logits `write_predictions` writes."""
    return _evaluate_many(dataset, data_dir, [(checkpoint, model_label)], split, fold, folds, protocol, resolutions,
                          dev, image_size, batch_size, workers, skip_bad, max_images, order, keep_logits,
                          bn_recalibration)[0]


class _Opened(NamedTuple):
    """One checkpoint ready to test: its network and metadata, its test set, the fold rule and
    input size it is tested under."""
    checkpoint: str | os.PathLike
    label: str | None
    model: torch.nn.Module
    meta: dict
    data: FaceDataset
    protocol: str | None
    folds: int | None
    size: int


def _evaluate_many(dataset: str, data_dir: str | os.PathLike,
                   checkpoints: Sequence[tuple[str | os.PathLike, str | None]], split: str,
                   fold: int | None, folds: int | None, protocol: str | None, resolutions: list[str | int],
                   dev: torch.device, image_size: int | None, batch_size: int, workers: int | None,
                   skip_bad: bool, max_images: int | None, order: str | os.PathLike | None,
                   keep_logits: bool, bn_recalibration: bool = False) -> list[tuple[dict, Tested]]:
    """`_evaluate` of several ``(checkpoint, model label)`` on one test set: the images are read,
    lowered and resized once per resolution and input size, and every network sees the same
    batches (so each result equals its own `_evaluate`, to the bit)."""
    test_sets: dict[tuple[str | None, int | None], FaceDataset] = {}
    opened = []
    for checkpoint, label in checkpoints:
        model, meta, data, used_protocol, used_folds = open_checkpoint_and_data(
            dataset, data_dir, checkpoint, split, fold, folds, protocol, dev, skip_bad, order, test_sets)
        opened.append(_Opened(checkpoint, label, model, meta, data, used_protocol, used_folds,
                              checkpoint_image_size(meta, image_size)))
    logits_of: dict[int, list[tuple[str | int, Tensor, Tensor]]] = {i: [] for i in range(len(opened))}
    recalibrated_of: dict[int, dict[str, Tensor]] = {i: {} for i in range(len(opened))}
    groups: dict[tuple[int, int], list[int]] = {}  # (test set, input size) -> checkpoints
    for i, o in enumerate(opened):
        groups.setdefault((id(o.data), o.size), []).append(i)
    for members in groups.values():
        data, size = opened[members[0]].data, opened[members[0]].size
        loader = make_loader(limited(data, max_images), batch_size, default_workers() if workers is None else workers,
                             dev)
        for r in resolutions:
            data.transform = LoweredEvalTransform(dataset, size, r)
            recalibrate = bn_recalibration and r != "native"
            batches = read_batches(loader) if recalibrate else loader
            models = [(opened[i].model, opened[i].meta["mean_bgr"]) for i in members]
            # the copies measure their statistics in the same pass as the plain test (`bn_recalibrated`)
            copies = [(bn_measuring_copy(model), mean) for model, mean in models] if recalibrate else []
            outputs = run_models(models + copies, batches, dev)
            for i, (logits, labels) in zip(members, outputs):
                logits_of[i].append((r, logits, labels))
            if recalibrate:
                adapted = [(copied.eval(), mean) for copied, mean in copies]
                for i, (logits, _) in zip(members, run_models(adapted, batches, dev)):
                    recalibrated_of[i][str(r)] = logits
    is_kfold = dataset_info(dataset).has_folds
    out = []
    for i, (checkpoint, label, _, meta, data, used_protocol, used_folds, size) in enumerate(opened):
        results: dict[str, Any] = {}
        for r, logits, labels in logits_of[i]:
            y_true, y_pred = labels.numpy(), logits.argmax(1).numpy()
            entry = classification_metrics(y_true, y_pred, len(data.classes))
            entry["accuracy_ci"] = list(bootstrap_accuracy_ci(y_true, y_pred, n_resamples=BOOTSTRAP_RESAMPLES,
                                                              seed=BOOTSTRAP_SEED))
            entry["predictions"] = y_pred.tolist()
            if bn_recalibration:
                adapted = recalibrated_of[i].get(str(r))
                metrics = entry if adapted is None else classification_metrics(
                    y_true, adapted.argmax(1).numpy(), len(data.classes))
                entry["bn_recalibrated"] = {k: metrics[k] for k in (*SCALAR_METRICS, "n")}
            results[str(r)] = entry
        result = {
            "dataset": dataset, "checkpoint": str(checkpoint), "model": label, "classes": list(data.classes),
            "split": split, "fold": fold, "folds": used_folds if is_kfold and fold is not None else None,
            "protocol": used_protocol if is_kfold else None,
            "fold_order": getattr(data, "fold_order", None) if is_kfold and fold is not None else None,
            "image_size": size, "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "level": 0.95, "seed": BOOTSTRAP_SEED},
            "bad_items": list(data.bad_items), "max_images": max_images, "resolutions": results,
            "labels": y_true.tolist(), "seed": (meta.get("config") or {}).get("seed"),
        }
        out.append((result, (fold, list(data.samples), logits_of[i] if keep_logits else [])))
    return out


def evaluate_checkpoints(dataset: str, data_dir: str | os.PathLike,
                         checkpoints: Sequence[tuple[str | os.PathLike, str | None]], split: str = "test",
                         fold: int | None = None, folds: int | None = None, protocol: str | None = None,
                         resolutions: Iterable[str | int] = DEFAULT_RESOLUTIONS, device: str = "auto",
                         image_size: int | None = None, batch_size: int = 64, workers: int | None = None,
                         skip_bad: bool = False, max_images: int | None = None,
                         order: str | os.PathLike | None = None, bn_recalibration: bool = False) -> list[dict]:
    """`evaluate_checkpoint` of every ``(checkpoint, model label)`` on one test set (one ``fold``),
    each result equal to its own call's; the test images are read, lowered and resized once per
    resolution (and input size) for all of them, which is most of the time of a small network's
    test. Every network is held in memory at once: pass a few at a time on a small GPU."""
    return [result for result, _ in _evaluate_many(
        dataset, data_dir, checkpoints, split, fold, folds, protocol, parse_resolutions(resolutions),
        pick_device(device), image_size, batch_size, workers, skip_bad, max_images, order, keep_logits=False,
        bn_recalibration=bn_recalibration)]


def evaluate_folds(data_dir: str | os.PathLike, folder: str | os.PathLike, *, folds: int | None = None,
                   protocol: str | None = None, order: str | os.PathLike | None = None,
                   resolutions: Iterable[str | int] = DEFAULT_RESOLUTIONS, device: str = "auto",
                   image_size: int | None = None, batch_size: int = 64, workers: int | None = None,
                   model_label: str | None = None, skip_bad: bool = False,
                   dump_predictions: str | os.PathLike | None = None, max_images: int | None = None,
                   bn_recalibration: bool = False) -> dict:
    """Each Oulu-CASIA fold checkpoint of ``folder`` (`fold_checkpoints`) tested on its own test fold.

    Returns `evaluate_checkpoint`'s keys for the whole folder (``checkpoint``: the folder,
    ``fold``: None, ``folds_tested``: the fold numbers found), ``per_fold``: each checkpoint's own
    `evaluate_checkpoint` result, and per resolution the fold means of ``accuracy``,
    ``mean_class_accuracy``, ``macro_f1`` and ``score`` (``<metric>_std``: sample standard deviation
    over folds, None for one fold), ``confusion_matrix`` (counts, summed) and
    ``confusion_matrix_fold_average`` (the mean of the row-normalised matrices: the paper's and the
    authors' figure), ``n`` (images, all folds), ``folds`` (how many) and with ``bn_recalibration``
    the fold means of ``bn_recalibrated``'s metrics (see `evaluate_checkpoint`). With ``dump_predictions``
    every fold's rows go to one CSV with their ``fold`` (`write_predictions`). MaferError as
    `evaluate_checkpoint`, or when the checkpoints were trained under different fold rules.
    """
    from mafer.aggregate import summarize_group

    dev, resolutions = pick_device(device), parse_resolutions(resolutions)
    per_fold, tested = [], []
    for fold, checkpoint in fold_checkpoints(folder).items():
        result, one = _evaluate("oulucasia", data_dir, checkpoint, "test", fold, folds, protocol, resolutions, dev,
                                image_size, batch_size, workers, model_label, skip_bad, max_images, order,
                                keep_logits=dump_predictions is not None, bn_recalibration=bn_recalibration)
        if per_fold and result["protocol"] != per_fold[0]["protocol"]:
            raise MaferError(f"{checkpoint}: trained under Oulu-CASIA protocol {result['protocol']!r}, "
                             f"{per_fold[0]['checkpoint']} under {per_fold[0]['protocol']!r}; expected one fold rule "
                             "for the whole folder")
        per_fold.append(result)
        tested.append(one)
    summary = summarize_group([(r["checkpoint"], r) for r in per_fold])["resolutions"]
    averaged = {}
    for key, entry in summary.items():
        averaged[key] = {**{m: entry[m]["mean"] for m in SCALAR_METRICS},
                         **{f"{m}_std": entry[m]["std"] for m in SCALAR_METRICS},
                         "confusion_matrix": entry["confusion_matrix"],
                         "confusion_matrix_fold_average": entry["confusion_matrix_fold_average"],
                         "n": entry["n"], "folds": entry["runs"]}
        if "bn_recalibrated" in entry:
            averaged[key]["bn_recalibrated"] = {**{m: entry["bn_recalibrated"][m]["mean"] for m in SCALAR_METRICS},
                                                "n": entry["n"]}
    if dump_predictions is not None:
        write_predictions(dump_predictions, per_fold[0]["classes"], tested)
    first = per_fold[0]
    return {**{k: first[k] for k in ("dataset", "model", "classes", "split", "folds", "protocol", "fold_order",
                                     "image_size", "bootstrap", "max_images")},
            "checkpoint": str(folder), "fold": None, "folds_tested": [r["fold"] for r in per_fold],
            "bad_items": [item for r in per_fold for item in r["bad_items"]], "resolutions": averaged,
            "per_fold": per_fold}


# ---------------------------------------------------------------------------------- CLI

def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with ``mafer embed``: which checkpoint on which data, on which device."""
    parser.add_argument("--dataset", required=True, choices=EXPRESSION_DATASETS)
    parser.add_argument("--data-dir", required=True, type=Path, help="folder holding <dataset>/ (or the dataset itself)")
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="checkpoint written by mafer step2 or released by the authors; for Oulu-CASIA also a "
                             "folder of fold checkpoints (best_model_ckp_fold_<k>.pt or fold<k>/best.pt), each tested "
                             "on its own test fold")
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument("--fold", type=int, help="Oulu-CASIA: fold whose test part is used, 1..folds (numbered as "
                                                  "the authors' best_model_ckp_fold_<k>.pt)")
    parser.add_argument("--folds", type=int, help="Oulu-CASIA: number of folds (default: the checkpoint's own; "
                                                   "10 for the authors' and where a checkpoint does not say)")
    parser.add_argument("--protocol", choices=OULU_PROTOCOLS,
                        help="Oulu-CASIA folds: stratified over images, over subjects, or the authors' exact rule "
                             "(default: the checkpoint's own; authors for the authors' checkpoints; else image)")
    parser.add_argument("--order", type=Path, metavar="FILE",
                        help="Oulu-CASIA protocol authors: the authors' oulucasia_database.csv whose rows the folds "
                             "are drawn over (default: the dataset folder's own, if any)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--image-size", type=int, help="network input size (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=default_workers(), help="data-loading processes")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out unreadable images (listed in the output) instead of stopping")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--resolutions", default=",".join(map(str, DEFAULT_RESOLUTIONS)),
                        help="comma-separated test resolutions (shorter side in pixels) or native "
                             "(default: %(default)s)")
    parser.add_argument("--model", help="model name stored in the metrics (base, CR, CR-Simplified, ...), "
                                        "used by mafer aggregate")
    parser.add_argument("--out", required=True, type=Path, help="metrics JSON to write")
    parser.add_argument("--bn-recalibrated", action="store_true",
                        help="also test each lowered resolution with the BatchNorm statistics re-estimated on its "
                             "test images (a diagnostic, not the paper's protocol)")
    parser.add_argument("--dump-predictions", type=Path, metavar="FILE",
                        help="also write a CSV with one row per test image and resolution: fold, item, label, "
                             "predicted class and the logits")


def _bn_cell(metrics: dict) -> str:
    return f"  {metrics['bn_recalibrated']['accuracy']:12.4f}" if "bn_recalibrated" in metrics else ""


def run(args: argparse.Namespace) -> int:
    common = dict(resolutions=args.resolutions, device=args.device, image_size=args.image_size,
                  batch_size=args.batch_size, workers=args.workers, model_label=args.model, skip_bad=args.skip_bad,
                  dump_predictions=args.dump_predictions, order=args.order,
                  bn_recalibration=args.bn_recalibrated)
    if args.checkpoint.is_dir():
        if not dataset_info(args.dataset).has_folds or args.fold is not None or args.split != "test":
            raise MaferError(f"{args.checkpoint}: a folder is read as Oulu-CASIA fold checkpoints, each tested on "
                             "its own test fold; expected --dataset oulucasia without --fold or --split (for one "
                             "checkpoint, pass its file)")
        result = evaluate_folds(args.data_dir, args.checkpoint, folds=args.folds, protocol=args.protocol, **common)
    else:
        result = evaluate_checkpoint(args.dataset, args.data_dir, args.checkpoint, split=args.split, fold=args.fold,
                                     folds=args.folds, protocol=args.protocol, **common)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    bn_head = "  BN-recal acc" if args.bn_recalibrated else ""
    if "per_fold" in result:
        print(f"{len(result['per_fold'])} fold checkpoints ({result['protocol']} folds over {result['fold_order']}), "
              "each on its own test fold:")
        absent = sorted(set(range(1, result["folds"] + 1)) - set(result["folds_tested"]))
        if absent:
            print(f"note: no checkpoint for fold(s) {', '.join(map(str, absent))} of {result['folds']}; the means "
                  f"below are over the {len(result['folds_tested'])} folds tested")
        first = next(iter(result["resolutions"]))
        print(f"{'fold':>10}  {'acc':>6}  {'F1':>6}  {'n':>6}  checkpoint (resolution {first})")
        for one in result["per_fold"]:
            m = one["resolutions"][first]
            print(f"{one['fold']:>10}  {m['accuracy']:6.4f}  {m['macro_f1']:6.4f}  {m['n']:>6}  {one['checkpoint']}")
        print("mean and standard deviation over the folds:")
        print(f"{'resolution':>10}  {'acc':>6}  {'std':>6}  {'avg acc':>7}  {'F1':>6}  {'n':>6}{bn_head}")
        for key, m in result["resolutions"].items():
            std = "" if m["accuracy_std"] is None else f"{m['accuracy_std']:.4f}"
            print(f"{key:>10}  {m['accuracy']:6.4f}  {std:>6}  {m['mean_class_accuracy']:7.4f}  "
                  f"{m['macro_f1']:6.4f}  {m['n']:>6}{_bn_cell(m)}")
    else:
        print(f"{'resolution':>10}  {'acc':>6}  {'95% CI':>13}  {'avg acc':>7}  {'F1':>6}  {'n':>6}{bn_head}")
        for key, m in result["resolutions"].items():
            lo, hi = m["accuracy_ci"]
            print(f"{key:>10}  {m['accuracy']:6.4f}  [{lo:.3f}, {hi:.3f}]  {m['mean_class_accuracy']:7.4f}  "
                  f"{m['macro_f1']:6.4f}  {m['n']:>6}{_bn_cell(m)}")
    if args.bn_recalibrated:
        print("BN-recal acc: BatchNorm statistics re-estimated on each resolution's test images; a diagnostic, "
              "not the paper's protocol")
    for item in result["bad_items"]:
        print(f"skipped {item}")
    print(f"wrote {args.out}")
    if args.dump_predictions is not None:
        print(f"wrote {args.dump_predictions}")
    return 0
