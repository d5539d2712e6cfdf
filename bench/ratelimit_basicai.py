"""Sustained pull against the rate-limited BasicAI sandbox: zero 429s, ≥ 90 % of the allowed rate.

``python -m bench.ratelimit_basicai [--seconds 30] [--real] [--transfers 8]``

The sandbox enforces its windows exactly (sliding, HTTP 429); the client
limits itself with pyrate-limiter over the same windows. The reference is the
most requests an ideal client could have had admitted in the same wall time:
a zero-latency greedy client replayed against the same windows (greedy
admission is optimal for sliding windows). Printed: requests made, 429s,
reference, ratio. By default the windows are scaled down (20/s, 150/10s) so
the run takes seconds; ``--real`` uses BasicAI's own (100/s, 3000/min,
72000/h, 864000/day) and needs over a minute to reach the minute window.

Transfers are in flight all along: a second thread pushes frames of five
files through the same remote (``upload_files``, the remote's ``transfers``
setting: ``--transfers``, default 8), so its presign calls share the
windows with the pull while its PUTs go to the object store, which the
windows do not cover. The requests counted are the API requests the
sandbox received in the measured time, from both threads.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from syncd.config import BasicAIConfig
from syncd.remotes.base import PushFile
from syncd.remotes.basicai import RATE_WINDOWS, BasicAIRemote
from syncd_sandbox import run_in_thread
from syncd_sandbox.ratelimit import RateWindows

TOKEN = "bench-token"
SCALED = [(20, 1.0), (150, 10.0)]
FRAME_FILES = 5  # files pushed per upload_files call: one fusion frame
FILE_BYTES = 64 * 1024


def ideal(windows: list[tuple[int, float]], seconds: float) -> int:
    """Requests a zero-latency greedy client gets admitted in ``seconds``."""
    w = RateWindows(windows)
    t, n = 0.0, 0
    while t < seconds:
        wait = w.admit(t)
        if wait is None:
            n += 1
        else:
            t += wait
    return n


def api_requests(url: str) -> int:
    """API requests the sandbox has received (admitted or not; the object store not counted)."""
    counters = httpx.get(f"{url}/__sandbox/counters").json()
    return sum(n for route, n in counters["requests"].items() if " " in route)


class Transfers:
    """Pushes frames through ``remote`` in a thread until stopped; counts the files stored."""

    def __init__(self, remote: BasicAIRemote, dataset_id: str) -> None:
        self.remote, self.dataset_id, self.files = remote, dataset_id, 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        payload = bytes(FILE_BYTES)
        frame = 0
        try:
            while not self._stop.is_set():
                frame += 1
                files = [
                    PushFile(
                        key=f"{frame:06d}/{n}",
                        device=f"camera_image_{n}",
                        filename=f"{frame:06d}.png",
                        size=FILE_BYTES,
                        body=lambda: iter((payload,)),
                    )
                    for n in range(FRAME_FILES)
                ]
                self.remote.upload_files(self.dataset_id, files)
                self.files += len(files)
        except BaseException as exc:  # reported by stop(): the run is then invalid
            self.error = exc

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"the transfers failed: {self.error}") from self.error
        return self.files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ratelimit_basicai", description=__doc__)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--real", action="store_true", help="BasicAI's real windows (slow)")
    p.add_argument("--items", type=int, default=3000)
    p.add_argument("--transfers", type=int, default=8, help="files stored at once (per push)")
    args = p.parse_args(argv)
    windows = RATE_WINDOWS if args.real else SCALED
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_in_thread("basicai", token=TOKEN, data_dir=Path(tmp)) as url,
    ):
        auth = {"Authorization": f"ApiKey {TOKEN}"}
        ds = httpx.post(
            f"{url}/api/v1/dataset/create",
            json={"name": "bench", "type": "LIDAR_FUSION"},
            headers=auth,
        ).json()["data"]["id"]
        names = [f"f{i:06d}" for i in range(args.items)]
        httpx.post(f"{url}/__sandbox/datasets/{ds}/items", json={"names": names}, timeout=60)
        httpx.post(f"{url}/__sandbox/config", json={"rate_windows": [list(w) for w in windows]})
        limits = tuple(f"{n}/{s:g}s" for n, s in windows)
        cfg = BasicAIConfig(
            platform="basicai",
            url=url,
            token=TOKEN,
            rate_limits=limits,
            transfers=args.transfers,
        )
        remote = BasicAIRemote("bench", cfg, TOKEN)
        before = api_requests(url)
        start = time.monotonic()
        transfers = Transfers(remote, str(ds))
        while time.monotonic() - start < args.seconds:
            for page in remote.new_items(str(ds), None):
                remote.labels(str(ds), [i.id for i in page.items])
                if time.monotonic() - start >= args.seconds:
                    break
        stored = transfers.stop()
        elapsed = time.monotonic() - start
        counters = httpx.get(f"{url}/__sandbox/counters").json()
        sent = api_requests(url) - before
        remote.close()
    rejected = int(counters["rejected_429"])
    reference = ideal(windows, elapsed)
    ratio = sent / reference
    print(f"windows {windows}, {elapsed:.1f} s of pulling")
    print(f"transfers meanwhile: {stored} files stored (the remote's transfers = {args.transfers})")
    print(f"requests sent: {sent}   HTTP 429 from the platform: {rejected}")
    print(f"reference (ideal greedy client, same windows, same time): {reference}")
    print(f"ratio: {ratio:.3f} (target ≥ 0.90 with 0 rejections)")
    return 0 if rejected == 0 and ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
