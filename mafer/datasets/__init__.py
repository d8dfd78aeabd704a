"""Face datasets of the paper: FER2013, RAF-DB, Oulu-CASIA, AffWild2 (EXPR) and VGGFace2."""

from mafer.datasets.info import DATASETS, DatasetInfo, dataset_info

__all__ = ["DATASETS", "DatasetInfo", "dataset_info"]
