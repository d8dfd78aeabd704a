"""Plumbing shared by every dataset reader: decoding, bad items, counts, cached uint8 tensors, saved splits."""

from __future__ import annotations

import os
import shlex
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import natsort
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mafer.datasets.info import DatasetInfo, dataset_info
from mafer.errors import MaferError
from mafer.image import decode_file, resize_square

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
# every command that reads datasets has --skip-bad; training configs and get_dataset() take skip_bad
SKIP_HINT = "use --skip-bad (skip_bad: true in a training config, skip_bad=True in Python)"
SPLIT_SEED = 17  # the paper's seed; every split we carve out (RAF-DB val, folds, hold-outs) uses it


def decode_image(path: str | os.PathLike, orient: bool = False) -> Tensor:
    """Decode an image file into a uint8 RGB tensor ``[3, H, W]`` as a viewer shows it.

    This is `mafer.image.decode_file`, the one decoder of image files: gray repeated to 3
    channels, 16-bit scaled to 0..255 (not clamped), alpha composed onto white, CMYK and palette
    converted, an image over the decompression-bomb limit refused with its size. With ``orient``
    the EXIF orientation tag is applied first; dataset readers leave it off because the released
    face crops carry no orientation and the GPU decoder ignores it too.
    Raises MaferError naming the file when it is missing, unreadable, truncated or too large.
    """
    return decode_file(path, orient=orient)


def gray_to_rgb(pixels: np.ndarray) -> Tensor:
    """A ``[H, W]`` uint8 gray array as a uint8 RGB tensor ``[3, H, W]``."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).unsqueeze(0).expand(3, -1, -1).contiguous()


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip")
# how the archives of each dataset are named where they are downloaded from (case-insensitive prefixes)
ARCHIVE_PREFIXES = {
    "fer2013": ("fer2013", "icml_face_data", "challenges-in-representation-learning"),
    "rafdb": ("rafdb", "raf-db", "raf_db", "basic"),
    "oulucasia": ("oulucasia", "oulu-casia", "oulu_casia"),
    "affwild2": ("affwild2", "aff-wild2", "aff_wild2"),
    "vggface2": ("vggface2", "vggface2_train"),
}


def archive_kind(path: Path) -> str | None:
    """``"zip"`` or ``"tar"`` (compressed or not) when ``path`` is an archive, else None.

    By the name's suffix, else -- for a file named otherwise, such as Kaggle's ``fer2013.tar.gz``
    gunzipped to a file called ``fer2013`` -- by its content (``zipfile.is_zipfile``,
    ``tarfile.is_tarfile``, which read a few header bytes).
    """
    name = path.name.lower()
    if name.endswith(ARCHIVE_SUFFIXES):
        return "zip" if name.endswith(".zip") else "tar"
    try:
        if not path.is_file():
            return None
        if zipfile.is_zipfile(path):
            return "zip"
        return "tar" if tarfile.is_tarfile(path) else None
    except OSError:  # unreadable: the reader that opens it says so
        return None


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a tar or zip archive, by its name or its content (see ``archive_kind``)."""
    return archive_kind(path) is not None


def extract_target(archive: Path, name: str) -> Path:
    """The folder ``extract_command`` extracts into: ``name`` next to the archive, unless a file (the archive
    itself, named ``name``) is there."""
    target = archive.parent / name
    return archive.parent / f"{name}-extracted" if target.exists() and not target.is_dir() else target


def extract_command(archive: Path, name: str) -> str:
    """The shell command that extracts ``archive`` into ``extract_target(archive, name)``."""
    target = shlex.quote(str(extract_target(archive, name)))
    if archive_kind(archive) == "zip":
        return f"unzip {shlex.quote(str(archive))} -d {target}"
    return f"mkdir -p {target} && tar -xf {shlex.quote(str(archive))} -C {target}"


def refuse_archive(archive: Path, name: str) -> MaferError:
    """The error for an archive a reader cannot read in place: what it is and the command that extracts it."""
    target = extract_target(archive, name)
    data_dir = archive.parent if target.name == name else target
    return MaferError(f"{archive}: this is a {archive_kind(archive) or 'tar'} archive; {name} is read from extracted "
                      f"files. Extract it with `{extract_command(archive, name)}` and pass --data-dir {data_dir}")


def printable(text: str, limit: int = 80) -> str:
    """``text`` with control characters, binary bytes and undecodable names escaped (``\\x00``), cut to ``limit``.

    For quoting file content or names in a message: what reaches a terminal is one line of
    printable characters whatever the file held.
    """
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return shown + ("..." if len(text) > limit else "")


def resolve_root(data_dir: str | os.PathLike, name: str) -> Path:
    """``data_dir/name`` when it is a folder, else an archive of ``name`` in ``data_dir``, else ``data_dir``.

    The ARCHITECTURE.md convention; an archive is returned so that the reader can read it in
    place or refuse it with the command that extracts it.
    """
    data_dir = Path(data_dir).expanduser()
    if not data_dir.exists():
        raise MaferError(f"{data_dir}: data folder not found; expected the folder holding {name}/ (see `mafer synth`)")
    sub = data_dir / name
    if sub.is_dir() or not data_dir.is_dir():
        return sub if sub.is_dir() else data_dir
    archives = sorted((p for p in data_dir.iterdir() if p.name.lower().startswith(ARCHIVE_PREFIXES.get(name, (name,)))
                       and p.is_file() and is_archive(p)), key=natural_key)
    return archives[0] if archives else data_dir


_PATH_ORDER = natsort.natsort_keygen(alg=natsort.ns.PATH)


def natural_key(path: str | os.PathLike) -> tuple:
    """Sort key ordering names by the numbers in them: ``9.jpeg`` < ``10.jpeg``, ``P2/`` < ``P10/``, any padding.

    The one order of files in every reader: natsort's path order (each component, then the
    suffix; digit runs compare by value, so ``1.jpeg`` .. ``12.jpeg`` come out as 1, 2, .. 12
    and ``7.jpeg`` sorts with ``007.jpeg``), then the text itself, so that names equal by value
    (``01`` and ``1``) are ordered too and the order is the same on every machine. Zero-padded
    names (the releases') keep the order ``sorted`` gives.
    """
    return _PATH_ORDER(os.fspath(path)), os.fspath(path)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` in ``natural_key`` order (hidden files ignored)."""
    with os.scandir(folder) as entries:  # the file type comes with the listing: no stat per image
        names = [e.name for e in entries
                 if e.name.lower().endswith(IMAGE_EXTENSIONS) and not e.name.startswith(".") and e.is_file()]
    return [folder / name for name in sorted(names, key=natural_key)]


def list_dirs(folder: Path) -> list[Path]:
    """Sub-folders of ``folder`` in ``natural_key`` order (hidden ones ignored)."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


def authors_val_pick(train_targets: Sequence[int], all_counts: Sequence[int], fraction: float,
                     seed: int = SPLIT_SEED) -> list[int]:
    """Indices (into ``train_targets``) of ``int(fraction * all_counts[c])`` training items of every class c.

    The authors' rule for RAF-DB's validation split (their data loader): the size of class c's
    share is ``int(0.05 * n_c)`` with ``n_c`` counting the class's train AND test images, and
    the items are a seeded draw from the class's training items. The draw depends only on the
    labels in order and the seed, so callers pass items in a canonical order (sorted names).
    """
    rng = np.random.default_rng(seed)
    targets = np.asarray(train_targets, dtype=np.int64)
    picked: list[int] = []
    for c, n_c in enumerate(all_counts):
        members = np.flatnonzero(targets == c)
        k = min(int(fraction * n_c), max(len(members) - 1, 0))  # never the class's last training item
        picked.extend(rng.choice(members, size=k, replace=False).tolist())
    return sorted(picked)


def stratified_pick(targets: Sequence[int], fraction: float, seed: int = SPLIT_SEED) -> list[int]:
    """Indices of ``round(fraction * n_c)`` items of every class c (at least one where the class has two or more)."""
    rng = np.random.default_rng(seed)
    targets = np.asarray(targets)
    picked: list[int] = []
    for c in np.unique(targets):
        members = np.flatnonzero(targets == c)
        k = int(round(fraction * len(members)))
        if len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        else:
            k = 0
        picked.extend(rng.choice(members, size=k, replace=False).tolist())
    return sorted(picked)


class FaceDataset(Dataset):
    """A labelled face dataset: ``ds[i] -> (transform(uint8 RGB [3, H, W]), label)``.

    Subclasses set ``name`` and ``splits`` and implement ``_index()`` (fill ``samples`` with one
    name per item, ``targets`` with labels) and ``_decode(i)``. Problems found while indexing go
    through ``_bad()``: once indexing is done they are a MaferError, or with ``skip_bad=True``
    entries in ``bad_items``. The error advises ``--skip-bad`` only where skipping leaves a usable
    split; where every item has a problem it says that the layout is the problem. ``details``
    holds lines saying how the reader read this copy (which frames a rule took, how files were
    matched), which ``mafer data summary`` and ``mafer data check`` print.
    """

    name: str = ""
    splits: tuple[str, ...] = ("train", "val", "test")
    # which distribution of the dataset was found, and why its numbers are not comparable with
    # the paper's ("" when they are); readers of several distributions set them in ``_index``
    variant: str = "release"
    variant_note: str = ""
    train_splits: tuple[str, ...] = ("train", "all")  # splits where every class must have items

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 skip_bad: bool = False):
        self.root = Path(root).expanduser()
        if self.root.is_file() and is_archive(self.root):
            raise refuse_archive(self.root, self.name)
        if split not in self.splits:
            raise MaferError(f"{self.name}: unknown split {split!r}; expected one of {', '.join(self.splits)}")
        if not self.root.is_dir():
            raise MaferError(f"{self.root}: dataset folder not found; expected the {self.name} folder")
        self.split = split
        self.transform = transform
        self.skip_bad = skip_bad
        self.info: DatasetInfo = dataset_info(self.name)
        self.classes: list[str] = list(self.info.classes)
        self.samples: list[str] = []
        self.targets: list[int] = []
        self.bad_items: list[str] = []
        self.details: list[str] = []
        self._uint8_cache: dict[int | None, tuple[Tensor, Tensor]] = {}
        self._pending_bad: list[str] | None = []
        self._index()
        pending, self._pending_bad = self._pending_bad, None
        self._settle_bad(pending)
        self._check_not_empty()

    # -- to implement ------------------------------------------------------------------
    def _index(self) -> None:
        raise NotImplementedError

    def _decode(self, i: int) -> Tensor:
        raise NotImplementedError

    def image_file(self, i: int) -> str | None:
        """The image file item ``i`` is decoded from; None where images live inside one file (a csv)."""
        return self.samples[i]

    def _select(self, keep: list[int]) -> None:
        """Keep only items ``keep``; subclasses with more per-item state extend it."""
        self.samples = [self.samples[i] for i in keep]
        self.targets = [self.targets[i] for i in keep]

    def keep(self, indices: Sequence[int]) -> None:
        """Restrict the dataset to the items at ``indices`` (in that order), e.g. to subsample it."""
        self._select([int(i) for i in indices])
        self._uint8_cache.clear()

    # -- shared ------------------------------------------------------------------------
    @property
    def mean_bgr(self) -> tuple[float, float, float]:
        return self.info.mean_bgr

    def _bad(self, item: str, reason: str) -> None:
        """Report a bad item (never dropped silently): kept until indexing ends, then raised or listed."""
        message = f"{item}: {reason}"
        if self._pending_bad is not None:
            self._pending_bad.append(message)
        else:
            self._settle_bad([message])

    def _settle_bad(self, problems: list[str]) -> None:
        """List ``problems`` in ``bad_items`` (``skip_bad``) or raise the first, advising ``--skip-bad`` only
        where skipping the items leaves a usable split."""
        if not problems:
            return
        if self.skip_bad:
            self.bad_items.extend(problems)
            return
        more = f"and {len(problems) - 1} more such item(s); " if len(problems) > 1 else ""
        unusable = self._unusable_reason(self.targets)
        if unusable is None:
            raise MaferError(f"{problems[0]} ({more}{SKIP_HINT} to skip and list such items)")
        raise MaferError(f"{problems[0]}" + (f" ({more.rstrip('; ')})" if more else "")
                         + f"; {unusable}, so skipping such items cannot help: this copy's layout is not one the "
                           f"{self.name} reader knows")

    def _unusable_reason(self, targets: Sequence[int]) -> str | None:
        """Why a split of just ``targets`` is unusable (no item, a training class without one); None if usable."""
        if not len(targets):
            return f"no item of split {self.split!r} is left"
        if self.split in self.train_splits:
            present = set(int(t) for t in targets)
            empty = [c for i, c in enumerate(self.classes) if i not in present]
            if empty:
                return f"class(es) {', '.join(empty)} would have no images in split {self.split!r}"
        return None

    def _empty_hint(self) -> str:
        """What a reader knows about why a split came out empty (appended to that error); "" when nothing."""
        return ""

    def _check_not_empty(self) -> None:
        if not self.samples:
            why = self._empty_hint()
            if self.bad_items:
                why = (f"{len(self.bad_items)} bad item(s) were skipped, e.g. {self.bad_items[0]}"
                       + (f"; {why}" if why else ""))
            raise MaferError(f"{self.root}: no images in split {self.split!r} of {self.name}; "
                             + (why or "expected at least one"))
        if self.split in self.train_splits:
            counts = self.class_counts()
            empty = [c for c, n in counts.items() if n == 0]
            if empty:
                raise MaferError(f"{self.root}: class(es) {', '.join(empty)} have no images in split {self.split!r}; "
                                 f"expected at least one image per class of {self.name}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        image = self._decode(i)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[i]

    def class_counts(self) -> dict[str, int]:
        """Number of items per class name, in label order (zeros included)."""
        counts = np.bincount(np.asarray(self.targets, dtype=np.int64), minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def map_images(self, fn: Callable[[Tensor], Any], workers: int | None = None) -> list[Any]:
        """``fn(decoded image)`` for every item, decoded in threads.

        A bad image raises MaferError; with ``skip_bad`` bad images are dropped from the dataset
        and listed in ``bad_items`` instead.
        """
        def one(i: int) -> tuple[Any, str | None]:
            try:
                return fn(self._decode(i)), None
            except MaferError as exc:
                return None, str(exc)

        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding
            results = list(pool.map(one, range(len(self))))
        errors = [err for _, err in results if err is not None]
        if errors:
            if not self.skip_bad:
                more = f" (and {len(errors) - 1} more bad images)" if len(errors) > 1 else ""
                unusable = self._unusable_reason([self.targets[i] for i, (_, e) in enumerate(results) if e is None])
                if unusable is not None:
                    raise MaferError(f"{errors[0]}{more}; {unusable} without them, so skipping bad images cannot help")
                raise MaferError(f"{errors[0]}{more}; {SKIP_HINT} to skip and list them")
            self.bad_items.extend(errors)
            good = [i for i, (_, err) in enumerate(results) if err is None]
            self.keep(good)
            self._check_not_empty()
            results = [results[i] for i in good]
        return [value for value, _ in results]

    def verify(self, workers: int | None = None) -> list[str]:
        """Decode every image once; returns ``bad_items``. Without ``skip_bad`` a bad image raises MaferError."""
        self.map_images(lambda image: None, workers)
        return self.bad_items

    def load_uint8(self, size: int | None = None, workers: int | None = None) -> tuple[Tensor, Tensor]:
        """All images as one uint8 tensor ``[N, 3, S, S]`` and the labels ``[N]`` (int64), decoded once and cached.

        With ``size`` each image is squashed to ``size x size`` by ``resize_square`` (the authors'
        ``Resize``, OpenCV bilinear); without it every image must already have the same size.
        """
        if size not in self._uint8_cache:
            fn = (lambda image: image) if size is None else (lambda image: resize_square(image, size))
            images = self.map_images(fn, workers)
            shapes = {tuple(im.shape) for im in images}
            if len(shapes) > 1:
                raise MaferError(f"{self.root}: images of {self.name} have different sizes {sorted(shapes)[:3]}...; "
                                 "expected one size, pass load_uint8(size=S)")
            self._uint8_cache[size] = (torch.stack(images), torch.tensor(self.targets, dtype=torch.int64))
        return self._uint8_cache[size]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, items={len(self)}, "
                f"classes={len(self.classes)}, bad_items={len(self.bad_items)})")
