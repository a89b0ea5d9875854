"""One raw input of a study's dataset, the lowest layer of edgesim.studies (data, yolo and dmd build on it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class Sample:
    """One raw input: an id (path), the image (tensor, array or PIL), its task label (int) and, when the dataset
    comes split (a YOLO export's train / valid / test folders, 000 A.1), its split."""

    sample_id: str
    image: Any
    label: int
    split: Optional[str] = None
