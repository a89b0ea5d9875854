"""The device catalog: device profiles shipped as JSON in profilers/data/devices/, looked up by name."""

from __future__ import annotations

from pathlib import Path

from profilers.errors import unknown_name
from profilers.schema import DeviceProfile, load_profile

CATALOG_DIR = Path(__file__).resolve().parent / "data" / "devices"
FACTS_PATH = Path(__file__).resolve().parent / "data" / "device_facts.json"


def list_devices(catalog_dir: Path = CATALOG_DIR) -> list[str]:
    """Names of the devices in the catalog, sorted."""
    return sorted(p.stem for p in Path(catalog_dir).glob("*.json"))


def device_path(name: str, catalog_dir: Path = CATALOG_DIR) -> Path:
    """Catalog file of a device name; one line listing the known devices otherwise."""
    path = Path(catalog_dir) / f"{name}.json"
    if not path.is_file():
        raise unknown_name("device", name, list_devices(catalog_dir))
    return path


def _looks_like_path(name_or_path: str) -> bool:
    return name_or_path.endswith(".json") or "/" in name_or_path or "\\" in name_or_path


def profile_file(name_or_path: str | Path, catalog_dir: Path = CATALOG_DIR) -> Path:
    """The file a device stands for: a path to a profile JSON as given, a catalog name's file (one line listing
    the known devices when there is none)."""
    if isinstance(name_or_path, Path) or _looks_like_path(str(name_or_path)):
        return Path(name_or_path)
    return device_path(str(name_or_path), catalog_dir)


def load_device(name_or_path: str | Path, catalog_dir: Path = CATALOG_DIR) -> DeviceProfile:
    """A device profile by catalog name or by path to a profile JSON (ProfileError on a bad file)."""
    return load_profile(profile_file(name_or_path, catalog_dir))
