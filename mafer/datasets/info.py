"""Class names (in label order) and channel means of every dataset, exactly as the paper."""

from __future__ import annotations

from dataclasses import dataclass

from mafer.errors import MaferError


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset.

    ``classes`` lists the class names in label order (label i is ``classes[i]``); it is empty
    for VGGFace2, whose classes are the identity folders found on disk. ``mean_bgr`` is the
    per-channel mean (B, G, R; 0..255) the network subtracts.
    """

    name: str
    classes: tuple[str, ...]
    mean_bgr: tuple[float, float, float]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
# Oulu-CASIA's cross-validation folds: stratified over images, over subjects, or the authors' exact
# rule (`mafer.datasets.oulucasia`); here so that option parsers need not import the reader.
OULU_PROTOCOLS = ("image", "subject", "authors")

DATASETS: dict[str, DatasetInfo] = {
    "fer2013": DatasetInfo(
        "fer2013",
        ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"),
        (133.05986, 133.05986, 133.05986),
    ),
    "rafdb": DatasetInfo(
        "rafdb",
        ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"),
        (102.15835, 114.51117, 146.58075),
    ),
    "oulucasia": DatasetInfo(
        "oulucasia",
        ("Surprise", "Happiness", "Sadness", "Anger", "Fear", "Disgust"),
        (131.07828, 131.07828, 131.07828),
    ),
    "affwild2": DatasetInfo(
        "affwild2",
        ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"),
        VGGFACE2_MEAN_BGR,
    ),
    "vggface2": DatasetInfo("vggface2", (), VGGFACE2_MEAN_BGR),
}


def dataset_info(name: str) -> DatasetInfo:
    """The ``DatasetInfo`` of ``name``; MaferError listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise MaferError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}") from None
