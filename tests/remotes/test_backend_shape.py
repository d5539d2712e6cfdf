"""Every backend has the shape of docs/writing-a-backend.md: the same sections in the same
order, and the protocol's methods in the protocol's order."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

from syncd.remotes import base
from syncd.remotes.registry import PLATFORMS

SECTIONS = ["errors", "wire shapes", "the backend"]
CLASS_SECTIONS = ["datasets", "upload", "listing and labels"]
STRATEGY = {
    "archive": [base.ArchivePush],
    "resumable": [base.ResumableUploads, base.ArchivePush],
    "files": [base.FilePushRemote],
}


def _methods(protocol: type) -> list[str]:
    return [n for n, v in vars(protocol).items() if inspect.isfunction(v) and n[0] != "_"]


def expected_order(caps: base.Capabilities) -> list[str]:
    """The core's order, the strategy's methods after existing_names, the optional features
    after the core method they extend."""
    order = _methods(base.Remote)
    strategy = [m for p in STRATEGY[caps.upload] for m in _methods(p)]
    at = order.index("existing_names") + 1
    order[at:at] = strategy
    if caps.changed_labels:
        order.insert(order.index("new_items") + 1, "changed_items")
    if caps.status_fingerprint:
        order.insert(order.index("all_items") + 1, "status_fingerprint")
    return order


def _module(platform: str) -> ModuleType:
    return inspect.getmodule(PLATFORMS[platform].backend_class())  # type: ignore[return-value]


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_sections_come_in_the_same_order(platform: str) -> None:
    source = inspect.getsource(_module(platform))
    top = re.findall(r"^# --- (.+?) -+$", source, re.M)
    assert [t.split(" (")[0] for t in top] == SECTIONS
    inner = re.findall(r"^    # --- (.+?) -+$", source, re.M)
    assert inner == CLASS_SECTIONS
    tree = ast.parse(source)
    first_def = next(n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef))
    assert first_def == "classify"


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_methods_follow_the_protocol_order(platform: str) -> None:
    cls = PLATFORMS[platform].backend_class()
    wanted = expected_order(cls.capabilities)
    defined = [n for n, v in vars(cls).items() if inspect.isfunction(v) and n in wanted]
    assert defined == wanted


def test_the_order_is_the_one_the_guide_shows() -> None:
    caps = base.Capabilities(upload="archive", status_fingerprint=True)
    assert expected_order(caps) == [
        "close",
        "check",
        "find_dataset",
        "ensure_dataset",
        "bind_classes",
        "existing_names",
        "upload_archive",
        "submit",
        "processing",
        "frames",
        "new_items",
        "all_items",
        "status_fingerprint",
        "item_states",
        "labels",
    ]


def test_backends_import_nothing_above_them() -> None:
    """remotes/ and streams.py sit below the pipeline, the store and the daemon."""
    root = Path(base.__file__).parent
    files = [*root.glob("*.py"), root.parent / "streams.py"]
    higher = ("syncd.pipeline", "syncd.store", "syncd.daemon", "syncd.cli", "syncd.status")
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad = [n for n in names if n.startswith(higher)]
            assert not bad, f"{path.name} imports {bad}"
