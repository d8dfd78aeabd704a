"""How many synthetic faces each scale writes (one table, read by docs and pipeline profiles)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Scale:
    """Sizes of the five synthetic datasets at one scale."""

    name: str
    fer_train: int  # FER2013 rows with Usage=Training
    fer_val: int  # PublicTest
    fer_test: int  # PrivateTest
    raf_train: int  # RAF-DB train_* images
    raf_test: int  # test_* images
    oulu_subjects: int  # Oulu-CASIA subjects, each with one sequence per expression (6)
    oulu_frames: int  # frames per sequence, onset to peak
    aff_train_videos: int  # AffWild2 Training_Set videos
    aff_val_videos: int  # Validation_Set videos
    aff_frames: int  # annotated frames per video
    vgg_identities: int  # VGGFace2 identity folders
    vgg_images: int  # images per identity
    min_per_class: int  # every class has at least this many images in every split

    def to_dict(self) -> dict:
        return asdict(self)


SCALES: dict[str, Scale] = {
    # tiny: unit tests
    "smoke": Scale("smoke", fer_train=70, fer_val=21, fer_test=21, raf_train=70, raf_test=35,
                   oulu_subjects=4, oulu_frames=5, aff_train_videos=3, aff_val_videos=2,
                   aff_frames=20, vgg_identities=6, vgg_images=6, min_per_class=3),
    # the book's default: the whole demo pipeline runs in minutes on two CPU cores
    "demo": Scale("demo", fer_train=1400, fer_val=200, fer_test=300, raf_train=1400,
                  raf_test=300, oulu_subjects=20, oulu_frames=6, aff_train_videos=48,
                  aff_val_videos=8, aff_frames=30, vgg_identities=50, vgg_images=30,
                  min_per_class=8),
}
