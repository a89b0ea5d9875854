"""Model builders by name: importing this package registers every builder module listed below."""

from __future__ import annotations

from profilers.models import digits, graph, hf, mimic, sources, students, torchvision_models, vgg
from profilers.models.registry import ModelEntry, SplittableModel, build, entries, register

__all__ = ["ModelEntry", "SplittableModel", "build", "entries", "register",
           "digits", "graph", "hf", "sources", "mimic", "students", "torchvision_models", "vgg"]
