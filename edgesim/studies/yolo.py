"""Fall Detection - Eldercare Robot layout (000 A.1): a YOLO v7 PyTorch export, one fall/no-fall label per image.

Folder: images/ and labels/ (label files `class cx cy w h`, normalised), optionally under train/ valid/ test/,
and an optional data.yaml with class names. An image is a fall if any of its boxes has the fall class. The
export's own split is kept (000 A.1: 742 / 212 / 106 images in train / valid / test): `valid` early-stops the
switcher, `test` is Table 1's. Label files are UTF-8 (a byte-order mark is allowed); a class id that data.yaml
does not name is an error, as is a byte that is not UTF-8, each with file:line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from edgesim.studies.samples import Sample
from profilers.errors import EdgesimError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SPLIT_NAMES = ("train", "valid", "val", "test")
SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}  # "all": no split folders


@dataclass(frozen=True)
class YoloImage:
    """One image of the export: its path, fall label (1/0), the split folder it came from and its box classes."""

    path: Path
    label: int
    split: str
    box_classes: tuple[int, ...]


def class_names(root: Path) -> list[str]:
    """Class names from data.yaml ('names' as list or {id: name}); empty if there is no data.yaml."""
    import yaml

    f = root / "data.yaml"
    if not f.is_file():
        return []
    try:
        data = yaml.safe_load(_read_text(f)) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise EdgesimError(f"{f}: not valid YAML" + (f" at line {line + 1}" if line is not None else "")) from None
    names = data.get("names", []) if isinstance(data, dict) else []
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if not isinstance(names, list):
        raise EdgesimError(f"{f}: 'names' must be a list or mapping of class names")
    return [str(n) for n in names]


def fall_class_id(root: Path, fall_class: Optional[int | str] = None) -> int:
    """The fall class id: an int, a name looked up in data.yaml, or the data.yaml class whose name contains 'fall'."""
    if isinstance(fall_class, int):
        return fall_class
    names = class_names(root)
    if isinstance(fall_class, str) and fall_class.strip().lstrip("-").isdigit():
        return int(fall_class)
    wanted = (fall_class or "fall").lower()
    exact = [i for i, n in enumerate(names) if n.lower() == wanted]
    if exact:
        return exact[0]
    if fall_class is None:
        hits = [i for i, n in enumerate(names) if "fall" in n.lower() and "not" not in n.lower() and "no" != n.lower()[:2]]
        if hits:
            return hits[0]
        return 0 if not names else _no_fall_class(root, names)
    raise EdgesimError(f"fall class '{fall_class}' not in {root / 'data.yaml'} names {names}")


def _no_fall_class(root: Path, names: list[str]) -> int:
    """Error: data.yaml names no fall class."""
    raise EdgesimError(f"{root / 'data.yaml'}: no class name contains 'fall' (names {names}); pass the fall class id")


def _read_text(path: Path) -> str:
    """A UTF-8 text file without its byte-order mark; a non-UTF-8 byte is reported as file:line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EdgesimError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise EdgesimError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8") from None


def parse_label_file(path: Path, n_classes: Optional[int] = None) -> list[int]:
    """Class ids of the boxes in a YOLO label file; malformed lines, and ids >= n_classes (the data.yaml names,
    when known), raise one line naming file and line number."""
    classes = []
    text = _read_text(path)
    for no, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise EdgesimError(f"{path}:{no}: expected 'class cx cy w h' (5 fields), got {len(parts)}")
        try:
            cls = int(parts[0])
            box = [float(v) for v in parts[1:]]
        except ValueError:
            raise EdgesimError(f"{path}:{no}: expected an integer class and four numbers, got '{line.strip()}'") from None
        if cls < 0 or not all(0.0 <= v <= 1.0 for v in box):
            raise EdgesimError(f"{path}:{no}: class must be >= 0 and cx cy w h normalised to [0, 1], got '{line.strip()}'")
        if n_classes is not None and cls >= n_classes:
            raise EdgesimError(f"{path}:{no}: class {cls} is not in data.yaml's {n_classes} names (ids 0..{n_classes - 1})")
        classes.append(cls)
    return classes


def _split_dirs(root: Path) -> list[tuple[str, Path]]:
    """(split name, folder with images/) pairs: the split subfolders if present, else the root itself."""
    found = [(name, root / name) for name in SPLIT_NAMES if (root / name / "images").is_dir()]
    if found:
        return found
    if (root / "images").is_dir():
        return [("all", root)]
    raise EdgesimError(f"{root}: no images/ folder (expected images/ and labels/, or train|valid|test/images)")


def iter_fall_images(root: str | Path, fall_class: Optional[int | str] = None, missing_label: str = "negative") -> Iterator[YoloImage]:
    """Every image with its fall label; images without a label file are 'negative' (no person/fall) or 'skip'ped."""
    root = Path(root)
    if not root.is_dir():
        raise EdgesimError(f"fall detection dataset {root}: folder not found")
    if missing_label not in ("negative", "skip"):
        raise EdgesimError(f"missing-label policy '{missing_label}': expected 'negative' or 'skip'")
    fall_id = fall_class_id(root, fall_class)
    n_classes = len(class_names(root)) or None
    for split, folder in _split_dirs(root):
        for img in sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            lbl = folder / "labels" / (img.stem + ".txt")
            if not lbl.is_file():
                if missing_label == "skip":
                    continue
                yield YoloImage(img, 0, split, ())
                continue
            classes = tuple(parse_label_file(lbl, n_classes))
            yield YoloImage(img, int(fall_id in classes), split, classes)


def load_fall_samples(root: str | Path, fall_class: Optional[int | str] = None, missing_label: str = "negative"):
    """DMD samples (lazy PIL images) from a YOLO folder: sample_id = image path, label = fall (1) or not (0)."""

    return [Sample(str(im.path), _LazyImage(im.path), im.label, SPLIT_ALIASES.get(im.split))
            for im in iter_fall_images(root, fall_class, missing_label)]


class _LazyImage:
    """A PIL image opened on first use, so a large folder is not held in memory."""

    def __init__(self, path: Path):
        self.path = path

    def convert(self, mode: str):
        """PIL's convert on the opened image; one-line error for unreadable files."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.path) as im:
                return im.convert(mode)
        except (OSError, UnidentifiedImageError) as exc:
            raise EdgesimError(f"{self.path}: cannot read image ({type(exc).__name__})") from None
