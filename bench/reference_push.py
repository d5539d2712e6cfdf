"""The network benchmark's references: the requests of a push as a good tool would make them.

Each reference does what syncd does for the same unit, against the same
sandbox, into a dataset of its own (created before the clock starts):

* the API calls at their minimum count, made by a small client here
  (httpx). Calls that do not depend on each other go eight at a time; the
  phases the API orders (presign → store → register) run one after another;
* every object-store transfer by ``curl --parallel --parallel-max 8`` (one
  curl for all of them, connections kept alive) to the presigned URLs the
  platform's API handed out, the way the platform's docs say to use them.

The request bodies come from syncd's own wire helpers (``presign_entry``,
``batch_add_body``, ``segments_wire``…), so the reference registers exactly
what syncd registers. Every ``push_*`` function returns its wall seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench.common import TOKEN, curl_put
from syncd.remotes import basicai as basicai_wire
from syncd.remotes import segments_wire
from syncd.remotes.base import PushData, PushFile

PARALLEL = 8
T = TypeVar("T")
R = TypeVar("R")


def have_curl() -> bool:
    return shutil.which("curl") is not None


def _client(base: str, auth: str) -> httpx.Client:
    limits = httpx.Limits(max_connections=PARALLEL, max_keepalive_connections=PARALLEL)
    return httpx.Client(base_url=base, headers={"Authorization": auth}, limits=limits, timeout=120)


def _each(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``fn`` over ``items``, eight at a time (independent API calls), in order."""
    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(fn, items))


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def curl_parallel(work: Path, transfers: Sequence[list[tuple[str, str]]]) -> None:
    """One ``curl --parallel --parallel-max 8`` for every transfer; each transfer is its
    curl config options (``(option, value)`` pairs, the URL among them); raises on any
    failure (``--fail``: an HTTP error is one)."""
    lines: list[str] = []
    for options in transfers:
        lines += [f"{k} = {_quote(v)}" for k, v in options]
        lines += ['output = "/dev/null"', "fail", "next"]
    config = work / "curl-transfers.conf"
    config.write_text("\n".join(lines[:-1]) + "\n")
    subprocess.run(
        [
            "curl",
            "--parallel",
            "--parallel-max",
            str(PARALLEL),
            "--no-progress-meter",
            "-K",
            str(config),
        ],
        check=True,
    )


def unit_items(unit: Path) -> dict[str, list[Path]]:
    """Data name → its files, as syncd groups a fusion unit (sensor folder / name.ext)."""
    items: dict[str, list[Path]] = {}
    for path in sorted(p for p in unit.rglob("*") if p.is_file() and not p.name.startswith("_")):
        items.setdefault(path.stem, []).append(path)
    return items


def _push_file(path: Path) -> PushFile:
    return PushFile(
        key=path.name,
        device=path.parent.name,
        filename=path.name,
        size=path.stat().st_size,
        body=lambda: iter(()),
    )


# --------------------------------------------------------------------------- BasicAI


def basicai_dataset(url: str, name: str, dataset_type: str) -> str:
    with _client(url + "/api/v1", f"ApiKey {TOKEN}") as api:
        r = api.post("/dataset/create", json={"name": name, "type": dataset_type})
        r.raise_for_status()
        return str(r.json()["data"]["id"])


def push_basicai(work: Path, url: str, dataset_id: str, unit: Path) -> float:
    """Presign in batches of 100, store every file, register in batches of 100."""
    items = unit_items(unit)
    files = [(name, path, _push_file(path)) for name, paths in items.items() for path in paths]
    batch = basicai_wire.ID_BATCH
    with _client(url + "/api/v1", f"ApiKey {TOKEN}") as api:

        def call(path: str, body: Any) -> Any:
            r = api.post(path, json=body)
            r.raise_for_status()
            envelope = r.json()
            if str(envelope.get("code")).upper() != "OK":
                raise RuntimeError(f"{path}: {envelope}")
            return envelope["data"]

        started = time.perf_counter()
        chunks = [files[i : i + batch] for i in range(0, len(files), batch)]
        urls = _each(
            lambda chunk: call(
                "/storage/batchGeneratePreSignedUploadUrl",
                [basicai_wire.presign_entry(f) for _, _, f in chunk],
            ),
            chunks,
        )
        signed = [s for reply in urls for s in reply]
        curl_parallel(
            work,
            [
                [
                    ("url", str(s["preSignedUrl"])),
                    ("upload-file", str(path)),
                    ("header", "Content-Type: application/octet-stream"),
                    ("header", "Expect:"),
                ]
                for (_, path, _), s in zip(files, signed, strict=True)
            ],
        )
        refs: dict[str, list[dict[str, Any]]] = {}
        for (name, _, f), s in zip(files, signed, strict=True):
            refs.setdefault(name, []).append(basicai_wire.file_ref(f, s))
        data = [PushData(n, r) for n, r in refs.items()]
        _each(
            lambda chunk: call(
                f"/dataset/batchAddData/{dataset_id}", basicai_wire.batch_add_body(chunk)
            ),
            [data[i : i + batch] for i in range(0, len(data), batch)],
        )
        return time.perf_counter() - started


# --------------------------------------------------------------------------- Segments.ai


def push_segments(work: Path, url: str, dataset_id: str, unit: Path, labelset: str) -> float:
    """An asset per image and point cloud (``POST /assets/``, then its presigned POST form),
    samples by ``samples_bulk`` (100 a call), then one pre-label ``PUT`` per sample."""
    items = unit_items(unit)
    with _client(url, f"APIKey {TOKEN}") as api:

        def call(method: str, path: str, body: Any) -> Any:
            r = api.request(method, path, json=body)
            r.raise_for_status()
            return r.json()

        dataset = call("GET", f"/datasets/{dataset_id}/", None)
        task = str(dataset["task_type"])
        attrs = dataset.get("task_attributes") or {}
        categories = {str(c["name"]): int(c["id"]) for c in attrs.get("categories") or []}
        uploads = [p for ps in items.values() for p in ps if p.parent.name not in _READ_ONLY]
        docs = {p: p.read_bytes() for ps in items.values() for p in ps if p not in uploads}

        started = time.perf_counter()
        assets = _each(lambda p: call("POST", "/assets/", {"filename": p.name}), uploads)
        transfers = []
        for path, asset in zip(uploads, assets, strict=True):
            form = asset["presignedPostFields"]
            options = [("url", str(form["url"]))]
            options += [("form-string", f"{k}={v}") for k, v in form["fields"].items()]
            options.append(("form", f"file=@{path};filename={path.name}"))
            transfers.append(options)
        curl_parallel(work, transfers)
        stored = {p: a["url"] for p, a in zip(uploads, assets, strict=True)}
        bodies, labels = [], {}
        for name, paths in items.items():
            refs = [_segments_ref(p, stored.get(p), docs.get(p)) for p in paths]
            frames = [segments_wire.Frame(name, refs)]
            label = segments_wire.label_attributes(task, frames, categories, name)
            metadata: dict[str, Any] = {"source": "syncd"}
            if label is not None:
                metadata["syncd_prelabel"] = True
                labels[name] = label
            sample = segments_wire.sample_attributes(task, name, frames, False)
            bodies.append({"name": name, "attributes": sample, "metadata": metadata})
        created = _each(
            lambda chunk: call("POST", f"/datasets/{dataset_id}/samples_bulk/", chunk),
            [bodies[i : i + 100] for i in range(0, len(bodies), 100)],
        )
        uuids = {str(r["name"]): str(r["uuid"]) for rows in created for r in rows}
        _each(
            lambda item: call(
                "PUT",
                f"/labels/{uuids[item[0]]}/{labelset}/",
                {"label_status": "PRELABELED", "attributes": item[1]},
            ),
            labels.items(),
        )
        return time.perf_counter() - started


# Read and sent inside the sample and its label, never stored as assets (as syncd does).
_READ_ONLY = {"camera_config": "calibration", "result": "prelabel"}


def _segments_ref(path: Path, url: str | None, doc: bytes | None) -> dict[str, Any]:
    device, size = path.parent.name, path.stat().st_size
    if url is not None:
        return {"kind": "asset", "device": device, "filename": path.name, "url": url, "size": size}
    return {
        "kind": _READ_ONLY[device],
        "device": device,
        "filename": path.name,
        "doc": json.loads(doc or b"null"),
    }


# --------------------------------------------------------------------------- Xtreme1


def xtreme1_dataset(url: str, name: str, dataset_type: str) -> str:
    with _client(url + "/api", f"Bearer {TOKEN}") as api:
        r = api.post("/dataset/create", json={"name": name, "type": dataset_type})
        r.raise_for_status()
        return str(r.json()["data"]["id"])


def push_xtreme1(url: str, dataset_id: str, archives: Sequence[Path]) -> tuple[float, list[str]]:
    """Every archive at once, each: a presigned URL, ``curl -T``, the submit. Returns the
    wall seconds and the upload serials (to wait for the platform's processing after)."""
    with _client(url + "/api", f"Bearer {TOKEN}") as api:

        def one(archive: Path) -> str:
            r = api.get(
                "/data/generatePresignedUrl",
                params={"fileName": archive.name, "datasetId": dataset_id},
            )
            r.raise_for_status()
            urls = r.json()["data"]
            subprocess.run(
                curl_put(archive, str(urls["presignedUrl"]), "application/zip"), check=True
            )
            body = {
                "fileUrl": urls["accessUrl"],
                "datasetId": int(dataset_id),
                "source": "LOCAL",
                "dataFormat": "XTREME1",
            }
            r = api.post("/data/upload", json=body)
            r.raise_for_status()
            return str(r.json()["data"])

        started = time.perf_counter()
        with ThreadPoolExecutor(len(archives)) as pool:
            serials = list(pool.map(one, archives))
        return time.perf_counter() - started, serials


def xtreme1_processed(url: str, serials: Sequence[str]) -> bool:
    """Whether the platform finished processing every upload (done or failed)."""
    with _client(url + "/api", f"Bearer {TOKEN}") as api:
        r = api.get(
            "/data/findUploadRecordBySerialNumbers", params={"serialNumbers": ",".join(serials)}
        )
        r.raise_for_status()
        rows = r.json()["data"] or []
    return len(rows) == len(serials) and all(
        row.get("status") in ("PARSE_COMPLETED", "FAILED") for row in rows
    )
