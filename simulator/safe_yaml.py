"""Scenario YAML read with stated limits: size, nesting, alias expansion, and no duplicate keys.

PyYAML's safe loader still accepts inputs that run away (a 50 MB file, an alias bomb expanding to billions of
nodes, a nesting deep enough to overflow the composer's recursion) and lets the last of two equal keys silently
win. Every such input here is one line naming the file and the line, before anything is built from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml

from profilers.errors import EdgesimError

#: the largest scenario YAML read, in bytes (shipped scenarios are under 10 kB)
MAX_YAML_BYTES = 1_000_000
#: the deepest nesting of mappings and lists (shipped scenarios nest 6 deep)
MAX_YAML_DEPTH = 32
#: the most nodes the document may hold with every alias expanded (an alias counts as a copy of its anchor)
MAX_YAML_NODES = 200_000

MERGE_TAG = "tag:yaml.org,2002:merge"

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""PyYAML's safe loader on libyaml where PyYAML was built with it (its events, nodes and line marks are the
pure-Python loader's; scenarios/city_scale.yaml reads in 10 ms of CPU instead of 83 ms)."""


class YamlLimitError(EdgesimError):
    """A YAML text over a stated limit, with a duplicate key, or not valid YAML."""


def _where(source: str, mark: Optional[yaml.Mark]) -> str:
    return f"{source}:{mark.line + 1}" if mark is not None else source


def _check_depth(text: str, source: str) -> None:
    """Nesting depth from the parser's events (iterative: a deep document cannot overflow this check)."""
    depth = 0
    too_deep = f"nested more than {MAX_YAML_DEPTH} levels deep (the limit for a scenario)"
    try:
        for event in yaml.parse(text, Loader=LOADER):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise YamlLimitError(f"{_where(source, event.start_mark)}: {too_deep}")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError as exc:  # libyaml's own limit, met while it scans a flow collection ahead of its events
        if "nesting depth" not in str(getattr(exc, "problem", "")):
            raise
        raise YamlLimitError(f"{_where(source, getattr(exc, 'problem_mark', None))}: {too_deep}") from None


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{node.id}>"


def _walk(node: yaml.Node, source: str, path: tuple, counted: dict[int, int], active: set[int]) -> int:
    """Nodes under `node` with aliases expanded (memoised by identity); duplicate keys and alias cycles are errors."""
    key = id(node)
    if key in counted:
        return counted[key]
    if key in active:
        raise YamlLimitError(f"{_where(source, node.start_mark)}: field '{'.'.join(map(str, path)) or '(top level)'}': "
                             "an alias refers to a node that contains it (a recursive document)")
    active.add(key)
    total = 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], yaml.Node] = {}
        for k, v in node.value:
            if k.tag == MERGE_TAG:
                total += _walk(v, source, path, counted, active)
                continue
            ident = (k.tag, _key_text(k))
            if ident in seen:
                field = ".".join(map(str, (*path, _key_text(k))))
                raise YamlLimitError(f"{_where(source, k.start_mark)}: field '{field}': given twice, at lines "
                                     f"{seen[ident].start_mark.line + 1} and {k.start_mark.line + 1}; keep one")
            seen[ident] = k
            total += 1 + _walk(v, source, (*path, _key_text(k)), counted, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            total += _walk(item, source, (*path, i), counted, active)
    active.discard(key)
    counted[key] = total
    if total > MAX_YAML_NODES:
        raise YamlLimitError(f"{_where(source, node.start_mark)}: field '{'.'.join(map(str, path)) or '(top level)'}': "
                             f"expands to more than {MAX_YAML_NODES:,} values (aliases counted as copies; the limit "
                             "for a scenario)")
    return total


def _too_big(source: str, size: int) -> YamlLimitError:
    return YamlLimitError(f"{source}: {size:,} bytes; a scenario is at most {MAX_YAML_BYTES:,} bytes (sweep with "
                          "grid ranges or cases instead of listing values)")


def check_size(path: Path) -> None:
    """A file over the size limit is refused before it is read (a missing one is the reader's to report)."""
    try:
        size = path.stat().st_size
    except OSError:
        return
    if size > MAX_YAML_BYTES:
        raise _too_big(str(path), size)


def load_yaml(text: str, source: str) -> tuple[Any, Optional[yaml.Node]]:
    """The data of a YAML text and its node tree (for line numbers), within the limits; one line if not."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_YAML_BYTES:
        raise _too_big(source, size)
    try:
        _check_depth(text, source)
        loader = LOADER(text)
        try:
            root = loader.get_single_node()
            if root is not None:
                _walk(root, source, (), {}, set())
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YamlLimitError(f"{_where(source, mark)}: not valid YAML: {problem}") from None
    return data, root
