"""The studies' one digits loader: scikit-learn's bundled 8x8 digits as arrays (no download), and the seeded
stratified splits and bilinear resizing that the DMD demo (000) and the distillation studies (002, 003) build on.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from profilers.errors import EdgesimError

DIGITS_SIDE_PX = 8
DIGITS_CLASSES = 10


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1797 digits: images (n, 1, 8, 8) float32 scaled to [0, 1] (pixel values 0..16) and digits (n,) int64."""
    from sklearn.datasets import load_digits as sklearn_digits

    d = sklearn_digits()
    return (d.images.astype(np.float32) / 16.0)[:, None, :, :], d.target.astype(np.int64)


def split_indices(idx: np.ndarray, labels: Optional[np.ndarray], seed: int, train_size=None,
                  test_size=None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of idx into (first, second), stratified by labels[idx] when given and possible, else plain."""
    from sklearn.model_selection import train_test_split

    if labels is not None:
        try:
            return tuple(train_test_split(idx, train_size=train_size, test_size=test_size, random_state=seed,
                                          stratify=np.asarray(labels)[idx]))
        except ValueError:  # a class with fewer than 2 samples, or fewer test samples than classes
            pass
    return tuple(train_test_split(idx, train_size=train_size, test_size=test_size, random_state=seed))


def resize_images(x, side_px: int, channels: int):
    """A (n, C, H, W) tensor resized bilinearly to side_px, its channels made `channels` (1 <-> 3 by copy or mean)."""
    import torch.nn.functional as F

    if x.shape[-1] != side_px or x.shape[-2] != side_px:
        x = F.interpolate(x, size=(side_px, side_px), mode="bilinear", align_corners=False)
    if x.shape[1] == 1 and channels == 3:
        x = x.repeat(1, 3, 1, 1)
    elif x.shape[1] == 3 and channels == 1:
        x = x.mean(dim=1, keepdim=True)
    elif x.shape[1] != channels:
        raise EdgesimError(f"images have {x.shape[1]} channels; cannot make {channels}")
    return x
