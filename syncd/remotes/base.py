"""The Remote protocol: what the pipeline may ask of any platform.

A small core (:class:`Remote`), one upload strategy per backend
(:class:`ArchivePush`, :class:`ResumableUploads`, :class:`FilePushRemote`),
optional features (:class:`ChangedLabels`, :class:`StatusFingerprint`), and
:class:`Capabilities`, the one declaration of which of these a backend has.
The pipeline sees only these protocols, the neutral types below and the errors
of :mod:`syncd.errors`. Each backend maps its vendor's replies to these in one
place. Every method may raise :class:`~syncd.errors.TransientError` (retry
later, same state) or :class:`~syncd.errors.PermanentError` (give up, keep the
reason); the docstrings say what else holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast, runtime_checkable

ProcessingState = Literal["pending", "done", "failed"]


@dataclass(frozen=True)
class RemoteDataset:
    id: str
    name: str
    type: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class RemoteItem:
    """One data item as listed by the platform (a frame, an image or a scene)."""

    id: str
    dataset_id: str
    name: str
    kind: str  # SINGLE_DATA | SCENE
    parent_id: str | None
    annotation_status: str | None
    status: str | None
    zip_path: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class RemoteObject:
    """One annotated object, flattened."""

    remote_id: str | None
    class_name: str | None
    class_id: str | None
    shape_type: str | None
    track_id: str | None
    track_name: str | None
    confidence: float | None
    geometry: dict[str, Any]
    attributes: list[Any]


@dataclass(frozen=True)
class RemoteLabel:
    """The result of one item from one source; ``raw`` is hashed for change detection."""

    item_id: str
    source: str
    raw: dict[str, Any]
    objects: list[RemoteObject]


@dataclass(frozen=True)
class Upload:
    """Where an archive was put; opaque to the pipeline, stored as JSON in ``packages.upload_ref``."""

    ref: dict[str, Any]


@dataclass(frozen=True)
class Processing:
    """The platform's processing of a submitted archive."""

    state: ProcessingState
    status: str  # the platform's own status word
    message: str = ""  # errors the platform reported (may be set with state "done")
    items_total: int | None = None
    items_parsed: int | None = None
    progress: str = (
        ""  # changes whenever the platform makes progress (timeouts count from the last change)
    )


@dataclass(frozen=True)
class ItemPage:
    """A batch of newly discovered items, ascending by id; commit it with ``cursor``."""

    items: list[RemoteItem]
    cursor: str


ByteSource = Callable[[], Iterable[bytes]]
OffsetSource = Callable[[int], Iterable[bytes]]  # the archive from a byte offset to its end


class Remote(Protocol):
    """The core every backend implements: datasets, names and the pull.

    Implementations: :mod:`syncd.remotes.xtreme1`, :mod:`~syncd.remotes.basicai`,
    :mod:`~syncd.remotes.deepen`, :mod:`~syncd.remotes.segments` (the list is
    :mod:`syncd.remotes.registry`). How packages are pushed is a strategy
    (:class:`ArchivePush`, :class:`ResumableUploads`, :class:`FilePushRemote`)
    chosen by the class attribute ``capabilities`` (:class:`Capabilities`);
    the optional features are :class:`ChangedLabels` and :class:`StatusFingerprint`.
    Backends define their methods in the order below (then the strategy's,
    after ``existing_names``; see ``docs/writing-a-backend.md``).
    """

    platform: str
    name: str

    def close(self) -> None:
        """Release connections. Idempotent."""
        ...

    def check(self) -> str:
        """Reach the platform and verify the token; return a one-line description.

        Idempotent (reads only). Raises AuthError for a bad token and
        TransientError when unreachable.
        """
        ...

    def find_dataset(self, name: str) -> RemoteDataset | None:
        """The dataset with exactly this name; None when not found. Idempotent (reads only)."""
        ...

    def ensure_dataset(self, name: str, dataset_type: str) -> tuple[RemoteDataset, bool]:
        """Find the dataset by exact name or create it; returns (dataset, created).

        Idempotent: a second call finds what the first created (a name taken
        meanwhile by another client is found, not created twice).
        """
        ...

    def bind_classes(self, dataset_id: str, classes: dict[str, str]) -> dict[str, str]:
        """Make sure the dataset has a class per name (``name → tool type``); return name → id.

        Idempotent: existing classes are reused, names compare exactly. A
        platform without classes returns ``{}`` (pre-labels keep their names).
        """
        ...

    def existing_names(self, dataset_id: str, names: Sequence[str]) -> set[str]:
        """Which of ``names`` already exist at the top level of the dataset (platform's rules).

        Idempotent (reads only); a name not found is simply not in the set.
        """
        ...

    def frames(self, dataset_id: str, scene_id: str) -> list[RemoteItem]:
        """Every frame of one scene (frames may still be arriving while it is processed).

        Idempotent (reads only); an unknown scene gives ``[]``.
        """
        ...

    def new_items(self, dataset_id: str, cursor: str | None) -> Iterator[ItemPage]:
        """Items not yet seen after ``cursor``, in pages ascending by cursor order.

        Idempotent (reads only): the caller commits each page's cursor; items
        may come again (an overlap), and callers skip the ids they hold.
        """
        ...

    def all_items(self, dataset_id: str) -> Iterator[list[RemoteItem]]:
        """Every live item of the dataset (scenes and their frames), for the full sweep.

        Idempotent (reads only); an item not listed is deleted on the platform.
        """
        ...

    def item_states(self, dataset_id: str, item_ids: Sequence[str]) -> dict[str, RemoteItem]:
        """The current listing of these items. Idempotent (reads only).

        An id that is not found is missing from the result (the item was deleted).
        """
        ...

    def labels(self, dataset_id: str, item_ids: Sequence[str]) -> list[RemoteLabel]:
        """Annotation results of at most 100 items, one entry per item and source.

        Idempotent (reads only); an item without results (or not found) has no entry.
        """
        ...


# --- upload strategies ---------------------------------------------------------------


class ArchivePush(Remote, Protocol):
    """Packages as one zip archive: ``capabilities.upload`` is ``"archive"`` or ``"resumable"``.

    The pipeline (:mod:`syncd.pipeline.upload`) stores the archive with
    :meth:`upload_archive` (or, for ``"resumable"``, through
    :class:`ResumableUploads`), asks the platform to import it with
    :meth:`submit` and polls :meth:`processing`.
    """

    def upload_archive(
        self, dataset_id: str, file_name: str, size: int, body: ByteSource
    ) -> Upload:
        """Store an archive of exactly ``size`` bytes; ``body()`` yields it (may be called per try).

        Not idempotent on its own, but harmless to repeat: each call stores a new object.
        """
        ...

    def submit(self, dataset_id: str, upload: Upload, *, with_results: str | None) -> str:
        """Ask the platform to import the archive; return the platform's serial number.

        Not idempotent unless ``capabilities.submit_is_idempotent``: callers
        record that they are about to submit and, after a crash, look at the
        dataset (:meth:`Remote.existing_names`) before submitting again.
        """
        ...

    def processing(self, serial: str) -> Processing:
        """The state of the import with this serial. Idempotent (reads only).

        Raises NotFoundError when the platform does not know the serial.
        """
        ...


def archive_push(remote: Remote) -> ArchivePush:
    """``remote`` as an :class:`ArchivePush` (its capabilities say it takes archives)."""
    if capabilities(remote).upload == "files":
        raise TypeError(f"{remote.platform} takes files, not archives")
    return cast(ArchivePush, remote)


@runtime_checkable
class ResumableUploads(Protocol):
    """The ``"resumable"`` strategy: uploads that continue where they stopped, even after a restart.

    A Remote that has it (``capabilities.upload == "resumable"``, also an
    :class:`ArchivePush` for ``submit``/``processing``) is driven by
    :mod:`syncd.pipeline.resumable` instead of :meth:`ArchivePush.upload_archive`: the ref of :meth:`open_upload` is stored
    before a byte is sent, and after any error or restart :meth:`resume_upload`
    asks the platform how much it holds and sends the rest. Its ``submit`` must
    be idempotent (the pipeline calls it again after a crash).
    """

    def open_upload(self, dataset_id: str, file_name: str, size: int, attempt: int) -> Upload:
        """Open a new upload session for an archive of ``size`` bytes; ``attempt`` counts sessions.

        Not idempotent: the caller records that it is opening ``attempt`` first.
        """
        ...

    def find_upload(self, dataset_id: str, file_name: str, attempt: int) -> Upload | None:
        """The session that :meth:`open_upload` with these arguments opened; None when not found.

        Idempotent (reads only).
        """
        ...

    def resume_upload(self, upload: Upload, size: int, body_from: OffsetSource) -> Upload:
        """Send whatever the session lacks; return the ref of the completed upload.

        Idempotent. Raises UploadSessionExpired when the session is dead (the
        caller records it and opens a new one), TransientError to try later.
        """
        ...


# per-file push (platforms that take files, not archives)


@dataclass(frozen=True)
class PushFile:
    """One local file to store on the platform; ``key`` identifies it across restarts."""

    key: str  # the file's path in the unit: the record of what was uploaded is keyed by it
    device: str  # the sensor folder it came from (``lidar_point_cloud_0``, ``result`` …)
    filename: str  # the file name on the platform (renames applied)
    size: int
    body: ByteSource


@dataclass(frozen=True)
class PushData:
    """One data item to register: its name and the stored refs of its files."""

    name: str
    files: list[dict[str, Any]]  # refs returned by upload_files, in the item's file order


class FilePushRemote(Remote, Protocol):
    """Packages as files: ``capabilities.upload`` is ``"files"`` (BasicAI, Segments.ai).

    The pipeline (:mod:`syncd.pipeline.push_files`) uploads each data item's
    files together, records every stored ref, then registers the items; such
    a remote has no ``upload_archive``/``submit``/``processing``.
    """

    def find_names(self, dataset_id: str, names: Sequence[str]) -> dict[str, str]:
        """Which of these top-level names exist in the dataset: name → id.

        Idempotent (reads only); a name not found is not in the result.
        """
        ...

    def upload_files(self, dataset_id: str, files: Sequence[PushFile]) -> list[dict[str, Any]]:
        """Store the files (any number; the backend batches); one JSON-able ref per file, in order.

        Not idempotent, but harmless to repeat: each call stores new objects,
        nothing is registered.
        """
        ...

    def register(
        self, dataset_id: str, data: Sequence[PushData], *, scene: str | None
    ) -> dict[str, str]:
        """Register data items (as the frames of a new ``scene`` when given); returns name → id.

        Not idempotent: a name that already exists raises RemoteRejected with
        ``code == "NAME_DUPLICATED"`` (or, where the platform matches by name,
        returns the existing item); callers record what they are about to
        register and, after a crash, ask :meth:`find_names` first.
        """
        ...


# --- optional features -----------------------------------------------------------------


@runtime_checkable
class StatusFingerprint(Protocol):
    """An optional capability: one cheap request that tells whether item statuses changed.

    ``status_fingerprint`` returns a value that changes whenever an item of
    the dataset is added or deleted or its annotation status changes (for
    example the dataset's status counters), or None when the platform cannot
    say. The pull reads it at the start of a cycle; when it equals the value
    read at the start of the previous complete cycle and no new item arrived,
    the statuses of unfinished items are not fetched again (their labels
    still are). A platform whose statuses can move so that such a value
    stays equal is caught by the full sweep.
    """

    def status_fingerprint(self, dataset_id: str) -> str | None:
        """The fingerprint, or None when the platform cannot say. Idempotent (reads only)."""
        ...


@runtime_checkable
class ChangedLabels(Protocol):
    """Optional capability: the items whose labels changed since a cursor, found by a sorted
    listing instead of re-reading every item (Segments.ai's ``gt_label__updated_at``).

    The pull asks for it every cycle, before the new items, with its own
    cursor (``labels``). Each page's cursor is committed with the page; a
    ``None`` cursor (first cycle) may answer one empty page whose cursor
    marks "now", because the new-items listing that follows reads every
    label. Items may come again (an overlap is allowed: unchanged labels hash
    equal and write nothing). Edits this cannot see (a deleted label) still
    arrive with the full sweep.
    """

    def changed_items(self, dataset_id: str, cursor: str | None) -> Iterator[ItemPage]:
        """Pages of items whose labels changed at or after ``cursor``. Idempotent (reads only)."""
        ...


# --- capabilities: the one declaration of what a backend has --------------------------

UploadStrategy = Literal["archive", "resumable", "files"]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond the core :class:`Remote`, declared in one place.

    Every backend class sets ``capabilities`` (a class attribute); the pipeline
    reads it through :func:`capabilities` and never probes with ``getattr`` or
    ``isinstance``.

    * ``upload``: how a package reaches the platform. ``"archive"``: one zip
      through :meth:`ArchivePush.upload_archive`, then ``submit``/``processing``;
      ``"resumable"``: one zip through :class:`ResumableUploads` sessions kept
      across restarts, then ``submit``/``processing``; ``"files"``: each data
      item's files through :class:`FilePushRemote`, then ``register``.
    * ``submit_is_idempotent``: ``submit`` checks the platform itself, so the
      pipeline may call it again after a crash without asking first.
    * ``changed_labels``: the remote is a :class:`ChangedLabels`.
    * ``status_fingerprint``: the remote is a :class:`StatusFingerprint`.
    * ``input_format``: the archive is converted to the platform's own input
      format (``"deepen"``: :mod:`syncd.formats.deepen`, chosen by
      :mod:`syncd.pipeline.platform_archive`), not syncd's folder layout.
    """

    upload: UploadStrategy = "archive"
    submit_is_idempotent: bool = False
    changed_labels: bool = False
    status_fingerprint: bool = False
    input_format: Literal["deepen"] | None = None


def capabilities(remote: Remote) -> Capabilities:
    """The capabilities a remote declares (the core alone when it declares none)."""
    caps = getattr(remote, "capabilities", None)
    return caps if isinstance(caps, Capabilities) else Capabilities()


PushMode = Literal["archive", "files"]


def push_mode(remote: Remote) -> PushMode:
    """``"files"`` for per-file push, else ``"archive"`` (resumable archives included)."""
    return "files" if capabilities(remote).upload == "files" else "archive"
