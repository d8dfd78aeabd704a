"""The one record of every dataset: its title, class names (in label order), channel mean,
splits, native size, folds and the step that uses it, exactly as the paper and the authors'
code. Every list of dataset names elsewhere (option choices, the profile schema's enums, the
Snakefile's wildcard) derives from `DATASETS`; nothing here imports a reader.
"""

from __future__ import annotations

from dataclasses import dataclass

from mafer.errors import MaferError


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset.

    ``title`` is the name as the paper writes it. ``classes`` lists the class names in label
    order (label i is ``classes[i]``); it is empty for VGGFace2, whose classes are the identity
    folders found on disk. ``mean_bgr`` is the per-channel mean (B, G, R; 0..255) the network
    subtracts. ``splits`` are the splits its reader serves; ``stored_splits`` those the
    release keeps on disk (Oulu-CASIA keeps one pool, ``all``, that the folds divide).
    ``native_size`` is the side in pixels of its images as released (None: varied, as
    VGGFace2's and Oulu-CASIA's photos), the size training caches them at. ``has_folds``:
    tested by k-fold cross-validation (``fold``, ``folds``, ``protocol`` apply). ``step``: 1 for
    the step-1 datasets, 2 for the step-2 ones.
    """

    name: str
    title: str
    classes: tuple[str, ...]
    mean_bgr: tuple[float, float, float]
    splits: tuple[str, ...]
    step: int
    native_size: int | None = None
    has_folds: bool = False
    stored_splits: tuple[str, ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def splits_on_disk(self) -> tuple[str, ...]:
        return self.stored_splits or self.splits


VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
# Oulu-CASIA's cross-validation folds: stratified over images, over subjects, or the authors' exact
# rule (`mafer.datasets.oulucasia`); here so that option parsers need not import the reader.
OULU_PROTOCOLS = ("image", "subject", "authors")

_TRAIN_VAL_TEST = ("train", "val", "test")

DATASETS: dict[str, DatasetInfo] = {
    "fer2013": DatasetInfo(
        "fer2013", "FER2013",
        ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"),
        (133.05986, 133.05986, 133.05986), _TRAIN_VAL_TEST, step=2, native_size=48,
    ),
    "rafdb": DatasetInfo(
        "rafdb", "RAF-DB",
        ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"),
        (102.15835, 114.51117, 146.58075), _TRAIN_VAL_TEST, step=2, native_size=100,
    ),
    "oulucasia": DatasetInfo(
        "oulucasia", "Oulu-CASIA",
        ("Surprise", "Happiness", "Sadness", "Anger", "Fear", "Disgust"),
        (131.07828, 131.07828, 131.07828), _TRAIN_VAL_TEST, step=2, has_folds=True, stored_splits=("all",),
    ),
    "affwild2": DatasetInfo(
        "affwild2", "AffWild2",
        ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"),
        VGGFACE2_MEAN_BGR, ("train", "val"), step=1, native_size=112,
    ),
    "vggface2": DatasetInfo("vggface2", "VGGFace2", (), VGGFACE2_MEAN_BGR, ("train", "val"), step=1),
}

# step 2's test sets (the paper's three columns) and step 1's training sets
STEP2_DATASETS = tuple(name for name, info in DATASETS.items() if info.step == 2)
STEP1_DATASETS = tuple(name for name, info in DATASETS.items() if info.step == 1)
# the sets with expression labels: what `mafer evaluate` and `mafer predict` can take a label order from
EXPRESSION_DATASETS = tuple(name for name, info in DATASETS.items() if info.classes)


def dataset_info(name: str) -> DatasetInfo:
    """The ``DatasetInfo`` of ``name``; MaferError listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise MaferError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}") from None
