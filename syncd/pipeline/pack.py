"""Pack: turn a settled unit into one or more packages with a frozen file list.

Contract of :func:`run_once` (for each ``settled`` package, and ``packing``
ones left by a crash):

1. ``settled → packing`` is committed first;
2. the unit is scanned again; files no other package covers are taken; if
   any file changed within ``settle_seconds`` the package waits (retry);
3. files are grouped into data items (:mod:`syncd.pipeline.layout`), names
   colliding with the dataset's (or other packages') are renamed or the unit
   refused (``name_collision``), pre-label classes are bound to the
   dataset's classes, and the groups are split into parts of at most
   ``max_package_bytes``;
4. in one transaction: the file rows of every part, one extra package per
   extra part, the exact archive size, and ``packing → packed``.

Nothing is written to disk: the archive is streamed at upload time.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import partial
from pathlib import Path

from sqlmodel import col, delete, select

from syncd.errors import LocalDataError, PermanentError, TransientError
from syncd.pipeline import platform_archive as platform_archives
from syncd.pipeline.archive import load_result, result_classes
from syncd.pipeline.backoff import schedule_retry
from syncd.pipeline.context import SyncContext
from syncd.pipeline.coverage import claimed_names, covered_versions
from syncd.pipeline.layout import (
    Group,
    arcname_for,
    group_items,
    is_result,
    plan_names,
    split_groups,
)
from syncd.pipeline.scan import FileStat, scan_unit
from syncd.safeopen import identify
from syncd.store import Package, PackageFile, PackageMoved, Progress, utcnow


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:60] or "unit"


def run_once(ctx: SyncContext, on_packed: Callable[[], object] | None = None) -> int:
    """Pack every due settled package of this sync; returns the number packed.

    ``on_packed`` is called after each package is packed (the daemon hands it to
    an upload worker at once, while the next one is packed)."""
    if not ctx.cfg.push:
        return 0
    with ctx.store.read() as s:
        due = s.exec(
            select(Package)
            .where(
                Package.sync == ctx.name,
                col(Package.state).in_(("settled", "packing")),
                Package.next_attempt_at <= time.time(),
                ctx.owned(),
            )
            .order_by(col(Package.id))
        ).all()
    done = 0
    for pkg in due:
        if ctx.stop.is_set():
            break
        assert pkg.id is not None
        if not ctx.store.coord.claim(pkg.id):
            continue  # another daemon of this machine has it
        try:
            pack_one(ctx, pkg)
            done += 1
        except StillChanging as exc:
            schedule_retry(ctx, pkg, str(exc), delay=max(ctx.cfg.settle_seconds, 1.0))
        except LocalDataError as exc:
            schedule_retry(ctx, pkg, str(exc))
        except TransientError as exc:
            schedule_retry(ctx, pkg, str(exc))
        except PermanentError as exc:
            fail(ctx, pkg, str(exc))
        finally:
            ctx.store.coord.release(pkg.id)
        if on_packed is not None:
            on_packed()
    return done


class InvalidPrelabels(PermanentError):
    """A result JSON cannot be read or parsed: sending it would lose its labels."""


class StillChanging(LocalDataError):
    """The unit changed within ``settle_seconds``: wait, then pack again."""


def _path(ctx: SyncContext, unit: str, rel_path: str, is_file: bool) -> Path:
    assert ctx.cfg.folder is not None
    return ctx.cfg.folder / unit if is_file else ctx.cfg.folder / unit / rel_path


def fail(
    ctx: SyncContext,
    pkg: Package,
    reason: str,
    files: Sequence[FileStat] = (),
    **fields: object,
) -> None:
    """End ``pkg`` in ``failed`` with ``reason``.

    ``files`` are the file versions it failed with: recorded so they are not
    detected again and again (changing a file makes a new version, which is).
    """
    with suppress(PackageMoved), ctx.store.package_step(pkg.id) as step:
        if files:
            step.keep_files(files)
        step.fail(reason, **fields)


def pack_one(ctx: SyncContext, pkg: Package) -> None:
    assert ctx.cfg.folder is not None
    if pkg.state == "settled":
        with ctx.store.package_step(pkg.id, expect=("settled",)) as step:
            step.advance("packing")
            pkg = step.pkg
    snap = scan_unit(ctx.cfg.folder, pkg.unit, ctx.cfg.exclude, ctx.cfg.ready_marker)
    if snap is None:
        fail(ctx, pkg, f"unit {pkg.unit!r} vanished before it could be packed")
        return
    if not ctx.cfg.ready_marker:
        age = time.time() - snap.newest_mtime_ns / 1e9
        if age < ctx.cfg.settle_seconds:
            raise StillChanging(f"unit {pkg.unit!r} is still changing")
    with ctx.store.read() as s:
        covered = covered_versions(s, ctx.name, pkg.unit, exclude_package=pkg.id, owned=ctx.owned())
    files = [f for f in snap.files if (f.rel_path, f.size, f.mtime_ns) not in covered]
    if not files:
        with ctx.store.package_step(pkg.id, expect=("packing",)) as step:
            step.pkg.file_count, step.pkg.total_bytes = 0, 0
            step.advance(
                "failed",
                reason="nothing left to upload: every file is already in another package",
            )
        return
    unreadable = [
        f.rel_path
        for f in files
        if not os.access(_path(ctx, pkg.unit, f.rel_path, snap.is_file), os.R_OK)
    ]
    if unreadable:
        raise LocalDataError(
            f"{pkg.unit}: {len(unreadable)} file(s) cannot be read (permission denied), "
            f"e.g. {unreadable[0]}; fix the permissions and syncd retries"
        )
    unit_is_scene = pkg.unit.lower().startswith("scene_") and not snap.is_file
    groups = group_items(files, pkg.unit, unit_is_scene)
    try:
        dataset_id = ctx.dataset_id()
        # Names are the dataset's keys, and other machines may feed the same
        # dataset: one daemon at a time chooses names and commits them.
        with ctx.store.coord.exclusive(f"names:{ctx.remote.name}:{dataset_id}"):
            _name_and_commit(ctx, pkg, groups, files, dataset_id)
    except PermanentError as exc:
        # The versions it failed with are kept: the unchanged unit is not
        # detected again and again (one failed package, one package.failed),
        # until a file changes or `syncd retry` reopens it.
        fail(ctx, pkg, str(exc), files)


def _name_and_commit(
    ctx: SyncContext, pkg: Package, groups: list[Group], files: list[FileStat], dataset_id: str
) -> None:
    """Rename (or refuse) colliding names, bind classes, split, and commit the parts."""
    with ctx.store.read() as s:
        claimed = claimed_names(s, ctx.name, exclude_package=pkg.id)
    names = [g.name for g in groups if g.name]
    taken = ctx.remote.existing_names(dataset_id, names) if names else set()
    # Every name a live package holds, not only this unit's own: a new name
    # must not collide either, and another machine's unit of the same name
    # picks the same candidates.
    taken |= claimed
    renames = plan_names(groups, taken, pkg.unit)
    if renames and ctx.cfg.name_collision == "refuse":
        reason = (
            f"names already exist in dataset {ctx.cfg.dataset!r}: "
            f"{', '.join(sorted(renames))} (the platform would silently skip them; "
            'rename them, or set name_collision = "rename")'
        )
        with ctx.store.tx() as tx:
            tx.event(
                "unit.refused",
                level="error",
                sync=ctx.name,
                package_id=pkg.id,
                unit=pkg.unit,
                reason=reason,
            )
        fail(ctx, pkg, reason, files)
        return

    try:
        class_ids = _bind_classes(ctx, dataset_id, pkg.unit, groups)
    except InvalidPrelabels as exc:
        fail(ctx, pkg, str(exc), files)
        return
    parts = split_groups(groups, ctx.cfg.max_package_bytes)
    _commit_parts(ctx, pkg, parts, renames, class_ids, dataset_id)


def _bind_classes(
    ctx: SyncContext, dataset_id: str, unit: str, groups: list[Group]
) -> dict[str, str]:
    """Look up or create the dataset's classes named by the pre-labels; ``name → id``.

    An unreadable or invalid result file fails the package (PermanentError):
    sending it would lose its labels silently.
    """
    assert ctx.cfg.folder is not None
    wanted: dict[str, str] = {}
    for g in groups:
        for f in g.files:
            if g.name is not None and is_result(f.rel_path):
                try:
                    doc = load_result(ctx.cfg.folder / unit / f.rel_path)
                except LocalDataError as exc:
                    raise InvalidPrelabels(f"pre-labels of {unit}: {exc}") from exc
                for name, tool in result_classes(doc).items():
                    wanted.setdefault(name, tool)
    if not wanted:
        return {}
    ids = ctx.remote.bind_classes(dataset_id, wanted)
    with ctx.store.tx() as tx:
        tx.event("classes.bound", sync=ctx.name, dataset_id=dataset_id, classes=ids)
    return ids


def _commit_parts(
    ctx: SyncContext,
    pkg: Package,
    parts: list[list[Group]],
    renames: dict[str, str],
    class_ids: dict[str, str],
    dataset_id: str,
) -> None:
    assert ctx.cfg.folder is not None
    folder = ctx.cfg.folder
    wrapper = _slug(pkg.unit) if not pkg.unit.lower().startswith("scene_") else pkg.unit
    with ctx.store.package_step(pkg.id, expect=("packing",)) as step:
        tx, session, first = step.tx, step.session, step.pkg
        session.exec(delete(PackageFile).where(col(PackageFile.package_id) == pkg.id))
        targets: list[Package] = [first]
        now = utcnow()
        for n in range(2, len(parts) + 1):
            extra = Package(
                sync=ctx.name,
                unit=pkg.unit,
                host=pkg.host,
                part=n,
                state="packing",
                created_at=now,
                updated_at=now,
                state_changed_at=now,
            )
            session.add(extra)
            targets.append(extra)
        session.flush()
        if len(parts) > 1:
            tx.event(
                "package.split",
                sync=ctx.name,
                package_id=first.id,
                unit=pkg.unit,
                parts=len(parts),
                package_ids=[t.id for t in targets],
                max_package_bytes=ctx.cfg.max_package_bytes,
            )
        if renames:
            tx.event(
                "package.renamed",
                level="warning",
                sync=ctx.name,
                package_id=first.id,
                unit=pkg.unit,
                renames=renames,
            )
        for target, groups in zip(targets, parts, strict=True):
            rows: list[PackageFile] = []
            for g in groups:
                for f in g.files:
                    rows.append(
                        PackageFile(
                            package_id=target.id or 0,
                            sync=ctx.name,
                            unit=pkg.unit,
                            rel_path=f.rel_path,
                            arcname=arcname_for(f, g, renames, wrapper),
                            item_key=renames.get(g.name, g.name) if g.name else "",
                            size=f.size,
                            mtime_ns=f.mtime_ns,
                            bind_classes=bool(class_ids)
                            and g.name is not None
                            and is_result(f.rel_path),
                        )
                    )
            session.add_all(rows)
            identify(folder, rows)  # device and inode: the upload reads these very files
            target.archive_name = f"p{target.id}-{_slug(pkg.unit)}.zip"
            # x15 hook: a platform's input format (Deepen) decides the archive's members and size.
            target.archive_bytes = platform_archives.archive_size(
                ctx,
                folder,
                rows,
                class_ids,
                record=partial(tx.event, sync=ctx.name, package_id=target.id, unit=pkg.unit),
            )
            target.file_count = len(rows)
            target.total_bytes = sum(r.size for r in rows)
            target.item_count = sum(
                len(g.item_names) if g.scene else (1 if g.name else 0) for g in groups
            )
            target.has_results = any(g.has_results for g in groups)
            target.remote_dataset_id = dataset_id
            target.upload_ref = Progress(classes=class_ids).dump()
            target.last_error = None
            target.attempts = 0
            target.next_attempt_at = 0.0
            tx.transition(
                target,
                "packed",
                files=target.file_count,
                bytes=target.total_bytes,
                archive=target.archive_name,
                archive_bytes=target.archive_bytes,
                items=target.item_count,
                part=target.part,
                parts=len(parts),
            )
