"""``mafer data check``: is this copy of a dataset the release the paper used?

Reads every split, decodes every image once (with a progress bar), and reports which
distribution of the dataset was found, the counts per split and class beside the official
release's, missing or unreadable files, duplicate images, and one verdict line.
"""

from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mafer.datasets import DATASETS, FaceDataset, get_dataset
from mafer.datasets.base import ARCHIVE_PREFIXES, is_archive
from mafer.errors import MaferError

MATCHES = "matches the release the paper used"


@dataclass(frozen=True)
class Reference:
    """Counts of an official release: ``counts[key]`` is a per-class dict or a total, where ``key`` is
    one of our splits, several joined by ``+`` (their sum), ``videos`` or ``identities``."""

    release: str
    source: str
    counts: dict[str, dict[str, int] | int]


def _per_class(dataset: str, values: tuple[int, ...]) -> dict[str, int]:
    return dict(zip(DATASETS[dataset].classes, values))


# FER2013: split sizes from Goodfellow et al., "Challenges in representation learning: a report on
# three machine learning contests", ICONIP 2013 (28,709 / 3,589 / 3,589); per-class counts are the
# rows of Kaggle's fer2013.csv per Usage and emotion.
_FER_TRAIN = (3995, 436, 4097, 7215, 4830, 3171, 4965)
_FER_PUBLIC = (467, 56, 496, 895, 653, 415, 607)
_FER_PRIVATE = (491, 55, 528, 879, 594, 416, 626)
# RAF-DB basic: Li, Deng and Du, "Reliable crowdsourcing and deep locality-preserving learning for
# expression recognition in the wild", CVPR 2017 (12,271 train / 3,068 test); per-class counts are
# the lines of the release's EmoLabel/list_patition_label.txt per label, in our label order.
_RAF_TRAIN = (1290, 281, 717, 4772, 1982, 705, 2524)
_RAF_TEST = (329, 74, 160, 1185, 478, 162, 680)

REFERENCES: dict[str, Reference] = {
    "fer2013": Reference(
        "FER2013 (Kaggle fer2013.csv / icml_face_data.csv: Training, PublicTest, PrivateTest)",
        "Goodfellow et al., ICONIP 2013 (split sizes); rows of Kaggle's fer2013.csv per Usage and emotion",
        {"train": _per_class("fer2013", _FER_TRAIN), "val": _per_class("fer2013", _FER_PUBLIC),
         "test": _per_class("fer2013", _FER_PRIVATE)}),
    "rafdb": Reference(
        "RAF-DB basic (train_* split into train and val, test_*)",
        "Li, Deng and Du, CVPR 2017 (12,271 / 3,068); lines of EmoLabel/list_patition_label.txt per label",
        {"train+val": _per_class("rafdb", _RAF_TRAIN), "test": _per_class("rafdb", _RAF_TEST)}),
    # Zhao et al., "Facial expression recognition from near-infrared videos", Image and Vision
    # Computing 2011: 80 subjects x 6 expressions in VL/Strong = 480 sequences; the literature's
    # protocol keeps the last 3 (peak) frames of each, 1,440 images (e.g. Ding, Zhou and
    # Chellappa, "FaceNet2ExpNet", FG 2017).
    "oulucasia": Reference(
        "Oulu-CASIA VL/Strong, last 3 frames of each of the 480 sequences",
        "Zhao et al., Image and Vision Computing 2011 (80 subjects x 6 expressions); Ding et al., FG 2017 "
        "(last 3 frames, 1,440 images)",
        {"all": _per_class("oulucasia", (240,) * 6)}),
    # Kollias and Zafeiriou, "Analysing affective behavior in the second ABAW2 competition", ICCV
    # workshops 2021: the expression set's videos are split 253 training / 70 validation / 223 test.
    "affwild2": Reference(
        "AffWild2 EXPR, ABAW2 release (annotations/EXPR_Set)",
        "Kollias and Zafeiriou, ABAW2 competition report, ICCVW 2021 (253 training / 70 validation videos)",
        {"videos:train": 253, "videos:val": 70}),
    # Cao et al., "VGGFace2: a dataset for recognising faces across pose and age", FG 2018:
    # 8,631 training identities, 3,141,890 training images.
    "vggface2": Reference(
        "VGGFace2 training set", "Cao et al., FG 2018 (8,631 identities, 3,141,890 images)",
        {"identities": 8631, "train+val": 3141890}),
}


def _digest(image: Any) -> str:
    data = image.contiguous().numpy()
    return hashlib.blake2b(repr(data.shape).encode() + data.tobytes(), digest_size=16).hexdigest()


def scan(ds: FaceDataset, progress: bool | None = None) -> tuple[list[str], dict[str, list[str]]]:
    """Decode every image of ``ds`` once: ``(unreadable items, pixel digest -> items)``."""
    def one(i: int) -> tuple[str | None, str | None]:
        try:
            return _digest(ds._decode(i)), None
        except MaferError as exc:
            return None, str(exc)

    bad: list[str] = []
    digests: dict[str, list[str]] = {}
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(one, range(len(ds)))
        bar = tqdm(results, total=len(ds), desc=f"{ds.name} {ds.split}", unit="img", file=sys.stderr,
                   disable=None if progress is None else not progress, leave=False)
        for i, (digest, error) in enumerate(bar):
            if error is not None:
                bad.append(error)
            else:
                digests.setdefault(digest, []).append(ds.samples[i])
    return bad, digests


def _found(key: str, counts: dict[str, dict[str, int]], extra: dict[str, int]) -> dict[str, int] | int | None:
    if key in extra:
        return extra[key]
    parts = key.split("+")
    if not all(p in counts for p in parts):
        return None
    summed = {c: sum(counts[p][c] for p in parts) for c in counts[parts[0]]}
    return summed


def compare(name: str, counts: dict[str, dict[str, int]], extra: dict[str, int]) -> list[dict[str, Any]]:
    """Each reference count of ``name`` beside what was found: ``[{"what", "found", "expected", "matches"}]``."""
    rows = []
    for key, expected in REFERENCES[name].counts.items():
        found = _found(key, counts, extra)
        if isinstance(expected, int) and isinstance(found, dict):
            found = sum(found.values())
        rows.append({"what": key, "found": found, "expected": expected, "matches": found == expected})
    return rows


def check_dataset(name: str, data_dir: str | os.PathLike, progress: bool | None = None,
                  **options: Any) -> dict[str, Any]:
    """The report of ``mafer data check`` for one dataset (see the module docstring); never raises MaferError:
    a copy that cannot be read gets an ``unusable`` verdict naming why."""
    report: dict[str, Any] = {"dataset": name, "data_dir": str(data_dir), "reference": {
        "release": REFERENCES[name].release, "source": REFERENCES[name].source}}
    counts: dict[str, dict[str, int]] = {}
    bad: list[str] = []
    digests: dict[str, list[str]] = {}
    dropped: dict[str, int] = {}
    extra: dict[str, int] = {}
    notes: list[str] = []
    details: list[str] = []
    try:
        for split in DATASETS[name].splits_on_disk:
            ds = get_dataset(name, data_dir, split, skip_bad=True, **options)
            report.update(root=str(ds.root), variant=ds.variant)
            if ds.variant_note and ds.variant_note not in notes:
                notes.append(ds.variant_note)
            details += [line for line in ds.details if line not in details]
            unreadable, found = scan(ds, progress)
            bad += [item for item in ds.bad_items + unreadable if item not in bad]
            for digest, items in found.items():
                digests.setdefault(digest, []).extend(items)
            gone = set(unreadable)
            counts[split] = ds.class_counts()
            if unreadable:  # recount without the images that cannot be decoded
                keep = [i for i in range(len(ds)) if not any(ds.samples[i] in e for e in gone)]
                ds.keep(keep)
                counts[split] = ds.class_counts()
            for key, n in getattr(ds, "dropped", {}).items():
                dropped[key] = dropped.get(key, 0) + n
            if name == "affwild2":
                extra[f"videos:{split}"] = ds.videos
            if name == "vggface2":
                extra["identities"] = len(ds.classes)
    except MaferError as exc:
        report.update(error=str(exc), verdict=f"unusable because {exc}", verdict_kind="unusable")
        return report
    if name == "oulucasia" and options.get("last_frames", 3) != 3:
        notes.append(f"last_frames={options['last_frames']} instead of the literature's 3 peak frames")
    report.update(classes=list(next(iter(counts.values()))), splits=counts, dropped=dropped, details=details,
                  comparisons=compare(name, counts, extra), bad_items=bad,
                  duplicates=[items for items in digests.values() if len(items) > 1])
    report["verdict_kind"], report["verdict"] = verdict(report, notes)
    return report


def verdict(report: dict[str, Any], notes: list[str]) -> tuple[str, str]:
    """``(kind, line)``: ``matches`` / ``usable`` (with the reasons) / ``unusable`` (with the reason)."""
    for split in ("train", "all"):
        empty = [c for c, n in report["splits"].get(split, {}).items() if n == 0]
        if empty:
            return "unusable", f"unusable because class(es) {', '.join(empty)} have no readable images in split {split!r}"
    reasons = list(notes)
    if report["bad_items"]:
        reasons.append(f"{len(report['bad_items'])} item(s) are missing, unreadable or malformed "
                       "(train with --skip-bad to leave them out)")
    differ = [row["what"] for row in report["comparisons"] if not row["matches"]]
    if differ:
        reasons.append(f"the counts of {', '.join(differ)} differ from the release's (a subset, another "
                       "edition or synthetic data)")
    if not reasons:
        return "matches", MATCHES
    return "usable", "usable, but numbers are not comparable with the paper because " + "; ".join(reasons)


def present_datasets(data_dir: str | os.PathLike) -> list[str]:
    """The datasets ``--all`` checks: those with a ``data_dir/<name>`` folder or archive."""
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise MaferError(f"{data_dir}: data folder not found; expected the folder holding one sub-folder per dataset")
    found = []
    for name in DATASETS:
        archives = [p for p in data_dir.iterdir() if p.name.lower().startswith(ARCHIVE_PREFIXES[name])
                    and p.is_file() and is_archive(p)]
        if (data_dir / name).is_dir() or archives:
            found.append(name)
    if not found:
        raise MaferError(f"{data_dir}: holds none of {', '.join(DATASETS)}; expected one sub-folder per dataset "
                         "(as `mafer synth --out` writes them)")
    return found


def format_report(report: dict[str, Any]) -> str:
    """The text form of one dataset's report: variant, counts beside the release's, problems, verdict."""
    lines = [f"{report['dataset']}: {report.get('root', report['data_dir'])}"]
    if "error" not in report:
        lines.append(f"  variant: {report['variant']}")
        lines += [f"  {line}" for line in report.get("details", [])]
        splits = list(report["splits"])
        width = max(len(c) for c in report["classes"] + ["class"]) if report["classes"] else 8
        refs = {row["what"]: row for row in report["comparisons"]}
        lines.append(f"  {'class':<{width}}  " + "  ".join(f"{s:>8}" for s in splits))
        shown = report["classes"] if len(report["classes"]) <= 12 else []  # VGGFace2: identities, not listed
        for c in shown:
            lines.append(f"  {c:<{width}}  " + "  ".join(f"{report['splits'][s][c]:>8}" for s in splits))
        lines.append(f"  {'total':<{width}}  " + "  ".join(f"{sum(report['splits'][s].values()):>8}" for s in splits))
        lines.append(f"  the release ({report['reference']['release']}; source: {report['reference']['source']}):")
        for what, row in refs.items():
            found, expected = row["found"], row["expected"]
            if isinstance(expected, dict):
                found_total = sum(found.values()) if isinstance(found, dict) else found
                diff = [f"{c} {found.get(c, 0)}/{n}" for c, n in expected.items()
                        if isinstance(found, dict) and found.get(c, 0) != n]
                detail = f"{found_total} found, {sum(expected.values())} in the release" + (
                    f" (per class, found/release: {', '.join(diff)})" if diff else "")
            else:
                detail = f"{found} found, {expected} in the release"
            lines.append(f"    {what}: {detail}: {'as in the release' if row['matches'] else 'differs'}")
        for key, n in report["dropped"].items():
            lines.append(f"  dropped ({key}): {n}")
        lines.append(f"  missing or unreadable: {len(report['bad_items'])}")
        for item in report["bad_items"][:10]:
            lines.append(f"    {item}")
        if len(report["bad_items"]) > 10:
            lines.append(f"    ... and {len(report['bad_items']) - 10} more (--json lists all)")
        lines.append(f"  duplicate images: {len(report['duplicates'])} group(s)")
        for group in report["duplicates"][:5]:
            lines.append(f"    {' = '.join(group)}")
    lines.append(f"  verdict: {report['verdict']}")
    return "\n".join(lines)
