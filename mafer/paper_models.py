"""The paper's four experimental models, in one table every module reads.

"Model" in this project means one of these four (the paper's Table 2 rows), not the network
architecture (``senet50``). Each model is a step-1 recipe followed by the same step 2
(fine-tuning on the expression dataset); the paper, Section 3, and the authors' README:

- **base**: no multi-resolution step 1; the VGGFace2-trained SE-ResNet-50 (where no weight
  file is given, the pipeline trains it on identities at full resolution instead);
- **CR**: teacher-student step 1 on VGGFace2 from base (cross-resolution distillation);
- **CR-Simplified**: one network trained with the cross-entropy alone on lowered VGGFace2
  faces, from base;
- **CR+AffWild2**: CR, then further multi-resolution training on lowered AffWild2 frames.

``key`` names a model in paths, profile sections (``step1.cr_simplified``) and Snakemake
wildcards; ``label`` is the paper's name, used in tables, figures, metrics files (``model``)
and ``summary.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath


@dataclass(frozen=True)
class PaperModel:
    """One of the paper's models and what step 1 does for it.

    ``step1_mode`` is the `mafer.train.config.TrainConfig` ``mode`` of its step 1 (``base``,
    ``cr``, ``cr-simplified``), on ``step1_dataset``; ``step1_from`` is the key of the model
    whose step-1 network it starts from (None: from scratch, or the given VGGFace2 weights for
    base). ``aliases`` are other spellings found in folder names (lower case, ``-`` for any
    ``_`` or space), besides the key and the label.
    """

    key: str
    label: str
    step1_mode: str
    step1_dataset: str
    step1_from: str | None
    aliases: tuple[str, ...] = ()

    def spellings(self) -> tuple[str, ...]:
        """Every normalised spelling of this model's name (see `normalize_name`)."""
        return tuple(dict.fromkeys(normalize_name(s) for s in (self.key, self.label, *self.aliases)))


# In the paper's order (the rows of its Table 2).
MODELS: tuple[PaperModel, ...] = (
    PaperModel("base", "base", step1_mode="base", step1_dataset="vggface2", step1_from=None),
    PaperModel("cr", "CR", step1_mode="cr", step1_dataset="vggface2", step1_from="base"),
    PaperModel("cr_simplified", "CR-Simplified", step1_mode="cr-simplified", step1_dataset="vggface2",
               step1_from="base", aliases=("crsimplified", "cr-simple")),
    PaperModel("cr_affwild2", "CR+AffWild2", step1_mode="cr-simplified", step1_dataset="affwild2",
               step1_from="cr", aliases=("craffwild2",)),
)

BY_KEY: dict[str, PaperModel] = {m.key: m for m in MODELS}
BY_LABEL: dict[str, PaperModel] = {m.label: m for m in MODELS}
KEYS: tuple[str, ...] = tuple(BY_KEY)
LABELS: tuple[str, ...] = tuple(BY_LABEL)
BASE: PaperModel = BY_KEY["base"]  # the model every other one is compared with


def normalize_name(text: str) -> str:
    """Lower case, runs of spaces and underscores as one ``-`` (``"CR_Simplified"`` -> ``"cr-simplified"``)."""
    return re.sub(r"[\s_]+", "-", text.lower())


def model_from_name(text: str) -> PaperModel | None:
    """The model a folder or file name refers to, or None.

    Matches a spelling of a model (key, label or alias) as the whole name, or as its first or
    last ``-``-separated part after `normalize_name` (``base-fold3``, ``rafdb_cr``,
    ``CR+AffWild2``); the longest spelling wins (``cr-simplified`` before ``cr``).
    """
    norm = normalize_name(text)
    spellings = sorted(((s, m) for m in MODELS for s in m.spellings()), key=lambda sm: len(sm[0]), reverse=True)
    for spelling, model in spellings:
        if norm == spelling or norm.startswith(spelling + "-") or norm.endswith("-" + spelling):
            return model
    return None


def model_from_path(path: str) -> PaperModel | None:
    """The model named by a folder of ``path`` or by its file name (without suffix), deepest
    first (`model_from_name`): ``runs/step2/cr_simplified/rafdb/.../best.pt`` -> CR-Simplified."""
    parts = PurePath(path).parts
    names = [*parts[:-1], PurePath(parts[-1]).stem] if parts else []
    for part in reversed(names):
        found = model_from_name(part)
        if found:
            return found
    return None
