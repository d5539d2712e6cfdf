"""``python -m bench`` (``make bench``): run the benchmarks, print them, rewrite RESULTS.md.

Every benchmark prints its figures with the reference measured in the same
run and their ratio in its last lines; the summary at the end repeats them
all. ``--platform`` adds a sandbox platform to the pull benchmark (the upload
and watch benchmarks measure syncd's own path, the same for every platform).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import common, deepen_json, detect, durability, network, pull, upload
from bench.common import Figure, machine, say, today
from bench.platforms import PLATFORMS

RESULTS = Path(__file__).with_name("RESULTS.md")
NETWORK_INTRO = (
    "The `network` rows (`--only network`, bench/network.py) run the sandboxes with a delay "
    "on every request (20 ms, then 50 ms: a WAN round trip) and, for Xtreme1's bulk data, "
    "one 50 MB/s link shared by all object-store PUTs. The reference does the same pushes as "
    "a good tool: `curl --parallel --parallel-max 8` of the same transfers to presigned URLs "
    "from the platform's API, plus the API calls at their minimum count (eight at a time where "
    "the API allows it; bench/reference_push.py). BasicAI is also compared with syncd itself "
    "run sequentially (`transfers = 1`, `upload_concurrency = 1`; target ≤ 0.2: at least 5 times "
    "faster). Xtreme1 is timed to the eighth `package.submitted`, the others to "
    "`package.done`."
)


def table(figures: list[Figure]) -> str:
    rows = [
        "| benchmark | figure | value | reference | reference value | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        target = "—" if f.target == float("inf") else f"≤ {f.target:g}"
        met = "—" if f.target == float("inf") else ("yes" if f.met else "**no**")
        rows.append(
            f"| {f.bench} | {f.name} | {f.value:.3g} {f.unit} | {f.reference_name} | "
            f"{f.reference:.3g} {f.unit} | {f.ratio:.2f} | {target} | {met} |"
        )
    return "\n".join(rows)


def write_results(
    figures: list[Figure], args: argparse.Namespace, notes: list[str], seconds: float
) -> None:
    text = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`python -m bench {' '.join(sys.argv[1:])}`) on {today()}.",
        "",
        f"Machine: {machine()}.",
        "",
        f"Whole run: {seconds / 60:.1f} min (the machine is shared: other processes ran meanwhile).",
        "",
        f"Each figure is the median of {args.repeat} repetitions (peak RSS: the maximum); "
        "every reference was measured in the same run. Ratio = value / reference.",
        "",
        NETWORK_INTRO,
        "",
        table(figures),
        "",
    ]
    if notes:
        text += ["Notes printed by the run:", ""] + [f"- {n}" for n in notes] + [""]
    RESULTS.write_text("\n".join(text))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--only",
        choices=("upload", "pull", "detect", "durability", "deepen", "network"),
        action="append",
    )
    p.add_argument("--platform", choices=sorted(PLATFORMS), action="append")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--sizes", default="1,4", help="upload sizes in GiB (default 1,4)")
    p.add_argument(
        "--deepen-gib", type=float, default=1.0, help="deepen: size of the fusion unit in GiB"
    )
    p.add_argument("--items", type=int, default=50_000, help="pull: items in the dataset")
    p.add_argument("--files", type=int, default=100_000, help="detect: files in the folder")
    p.add_argument(
        "--net-frames", type=int, default=network.FRAMES, help="network: frames of the fusion unit"
    )
    p.add_argument(
        "--net-unit-mib",
        type=int,
        default=network.XTREME1_UNIT_BYTES >> 20,
        help="network: size of each of the eight Xtreme1 units in MiB",
    )
    p.add_argument(
        "--work", type=Path, default=None, help="scratch directory (default: a temp dir)"
    )
    p.add_argument("--no-results", action="store_true", help="do not rewrite bench/RESULTS.md")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="run every syncd process under pyinstrument, profiles into DIR (implies --no-results)",
    )
    args = p.parse_args(argv)
    if args.profile is not None:
        common.PROFILE_DIR = args.profile.resolve()
        args.no_results = True
    only = set(args.only or ("upload", "pull", "detect", "durability", "deepen", "network"))
    platforms = args.platform or sorted(PLATFORMS, reverse=True)  # xtreme1, basicai
    work = args.work or Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    figures: list[Figure] = []
    notes: list[str] = []
    if "upload" in only:
        sizes = tuple(int(s) for s in args.sizes.split(","))
        figures += upload.run(work, "xtreme1", args.repeat, sizes, notes)
    if "pull" in only:
        for name in platforms:
            figures += pull.run(
                work / f"pull-{name}", PLATFORMS[name], args.repeat, args.items, notes
            )
    if "deepen" in only:
        figures += deepen_json.run(work / "deepen", args.repeat, args.deepen_gib, notes)
    if "detect" in only:
        figures += detect.run(work / "detect", "xtreme1", args.repeat, args.files, notes)
    if "network" in only:
        figures += network.run(
            work / "network", args.repeat, notes, args.net_frames, args.net_unit_mib << 20
        )
    if "durability" in only:
        figures += durability.run(work / "durability", args.repeat, notes)
    say("")
    say(f"summary ({machine()}; whole run {(time.monotonic() - started) / 60:.1f} min):")
    for f in figures:
        say(f.line())
    if not args.no_results:
        write_results(figures, args, notes, time.monotonic() - started)
        say(f"wrote {RESULTS.name}")
    if args.work is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(f.met for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
