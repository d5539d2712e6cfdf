"""State database and mirror: tables, migrations and the Store (one place for transactions)."""

from syncd.store.models import (
    FINAL_STATES,
    PACKAGE_STATES,
    Cursor,
    Dataset,
    Event,
    Item,
    Label,
    Object,
    Package,
    PackageFile,
    UnitStamp,
    utcnow,
)
from syncd.store.progress import ArchiveProgress, FilesProgress, Progress, ResumableProgress
from syncd.store.steps import PackageMoved, PackageStep
from syncd.store.store import Store, Tx

__all__ = [
    "FINAL_STATES",
    "PACKAGE_STATES",
    "ArchiveProgress",
    "Cursor",
    "Dataset",
    "Event",
    "FilesProgress",
    "Item",
    "Label",
    "Object",
    "Package",
    "PackageFile",
    "PackageMoved",
    "PackageStep",
    "Progress",
    "ResumableProgress",
    "Store",
    "Tx",
    "UnitStamp",
    "utcnow",
]
