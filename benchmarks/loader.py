"""Loader throughput against the decoding limit, on an LMDB of real clips.

For each setting (clips x frames at ``--image-size``) these paths handle the same videos:

- ``loader``: the DataModule path: LMDB read -> sample -> decode (``decoder=auto``, PyAV
  fallback) -> collate uint8 -> resize and pad to the model's input, as training does on its
  device;
- ``raw_<decoder>``: each installed index-based decoder (decord, torchcodec; PyAV fallback)
  decoding the very same frame indices from bytes already in memory (the limit);
- ``pyav_full``: PyAV decoding every frame of the stream to RGB and keeping the sampled ones,
  as the original's loader did.

Besides, each decoder's first video in a fresh process is timed (imports, loading the
library, one decode): what each DataLoader worker pays when it does not inherit the library.

``--stores`` compares instead where the loader reads the videos from, on the training
settings: the LMDB, the same videos as shards on local disk (``format=shards``) and those
shards uploaded to an S3-compatible server (moto) on the loopback interface, each path the
whole loader (read, sample, decode, collate) with ``--workers`` loader workers.

Everything runs in one process (``num_workers=0``), so the ratio loader/raw is the pipeline's
own overhead; paths alternate within each round so machine noise hits all of them. Every path
decodes with one thread, as each DataLoader worker does (workers, not decoder threads, use the
cores), so the figures are per worker. Besides the whole corpus, each path is also reported for
its two parts: the generated MSRVTT-like clips and the short, varied files of the media folder.

    .venv/bin/python benchmarks/loader.py --rounds 3 --json /tmp/loader.json
    .venv/bin/python benchmarks/loader.py --stores --rounds 3
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import av
import numpy as np
import torch
from common import record
from torch.utils.data import DataLoader

from clipbert.data.collate import collate_videos
from clipbert.data.datasets import VideoListDataset
from clipbert.data.decoding import DEFAULT_FPS, DecodeError, VideoInfo, build_decoder
from clipbert.data.frame_sampling import FrameSampling
from clipbert.data.lmdb_builder import build_vis_db
from clipbert.data.object_storage import RemoteSettings
from clipbert.data.readers import VideoClipReader
from clipbert.data.shard_builder import shard_store_copy, upload_shards
from clipbert.data.store_access import open_store
from clipbert.data.stores import LmdbStore, VisualStore
from clipbert.models.backbone import PIXEL_MEAN_RGB, PIXEL_STD_RGB
from clipbert.models.frame_input import FrameInput

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' loopback S3 server, shared with the benchmark
from tests.s3_server import CREDENTIALS, S3Server, s3_server  # noqa: E402

MEDIA = REPO.parent / "shared" / "media"
SETTINGS = {
    "train_1x2": FrameSampling(n_clips=1, num_frames=2, fps=1.0, strategy="rand"),
    "train_8x2": FrameSampling(n_clips=8, num_frames=2, fps=2.0, strategy="rand"),
    "infer_16x2": FrameSampling(n_clips=16, num_frames=2, fps=2.0, strategy="fixed"),
}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif"}


def write_web_clip(path: Path, seconds: float, rng: np.random.Generator) -> None:
    """An MSRVTT-like clip: 320x240, 30 fps, H.264 with x264's default keyframe spacing, showing
    a smooth texture that pans and a bar that sweeps (motion keeps the bitrate realistic)."""
    height, width, fps = 240, 320, 30
    coarse = torch.from_numpy(rng.uniform(0, 255, (1, 3, 24, 32)).astype(np.float32))
    texture = torch.nn.functional.interpolate(coarse, size=(2 * height, 2 * width), mode="bicubic")
    texture = texture.clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast", "threads": "1"}
        for t in range(int(seconds * fps)):
            y = int(height / 2 * (1 + np.sin(t / 50)))
            x = int(width / 2 * (1 + np.cos(t / 70)))
            frame = texture[y : y + height, x : x + width].copy()
            frame[(4 * t) % height : (4 * t) % height + 16] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def build_store(root: Path, media: Path, generated: int) -> tuple[LmdbStore, dict[str, list[str]]]:
    """The videos of ``media`` plus ``generated`` MSRVTT-like clips of 10-30 s in one LMDB, and
    the keys of those every path decodes whole (a corrupt file would time its failure, not
    decoding), by part of the corpus (``generated``, ``media``)."""
    src = root / "videos"
    src.mkdir()
    for file in sorted(media.glob("*")):
        if file.suffix.lower() in VIDEO_SUFFIXES:
            shutil.copy(file, src / file.name)
    rng = np.random.default_rng(0)
    for index in range(generated):
        write_web_clip(src / f"web_{index:03d}.mp4", rng.uniform(10, 30), rng)
    build_vis_db(src, root / "vis_db", progress=False)
    store = LmdbStore(root / "vis_db")
    decoder = build_decoder()
    readable: dict[str, list[str]] = {"generated": [], "media": []}
    all_keys = store.keys()
    for key in all_keys:
        data = store.get(key)
        try:
            decoder.read(data, lambda info: [0, info.num_frames - 1])
            with av.open(io.BytesIO(data)) as container:
                for _ in container.decode(container.streams.video[0]):
                    pass
            readable["generated" if key.startswith("web_") else "media"].append(key)
        except (DecodeError, av.error.FFmpegError):
            print(f"left out (not every path reads it): {key}")
    return store, {part: keys for part, keys in readable.items() if keys}


def loader_pass(
    reader: VideoClipReader, keys: list[str], image_size: int | None, batch: int, workers: int = 0
) -> int:
    """Videos through the DataLoader; with ``image_size`` also the float resize and pad that
    the model's input transform runs first, on its device (here: the CPU)."""
    loader = DataLoader(
        VideoListDataset(keys, reader),
        batch_size=batch,
        num_workers=workers,
        collate_fn=collate_videos,
    )
    transform = FrameInput(image_size, PIXEL_MEAN_RGB, PIXEL_STD_RGB) if image_size else None
    videos = 0
    for loaded in loader:
        frames = transform.resize(loaded.frames) if transform else loaded.frames
        videos += len(frames)
    return videos


def available_decoders() -> list[str]:
    """The index-based decoders that load here."""
    names = []
    for name in ("decord", "torchcodec"):
        try:
            build_decoder(name)
        except ImportError as exc:
            print(f"left out {name}: {exc}")
        else:
            names.append(name)
    return names


FIRST_VIDEO = (
    "import sys, time\n"
    "began = time.perf_counter()\n"
    "from clipbert.data.decoding import build_decoder\n"
    "data = open(sys.argv[2], 'rb').read()\n"
    "build_decoder(sys.argv[1], fallback=None).read(data, lambda info: [0])\n"
    "print(time.perf_counter() - began)\n"
)


def first_video_seconds(name: str, video: Path, rounds: int) -> float:
    """Median seconds from a fresh interpreter to ``name``'s first decoded frame."""
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", FIRST_VIDEO, name, str(video)],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            ).stdout
        )
        for _ in range(rounds)
    ]
    return statistics.median(runs)


def raw_pass(reader: VideoClipReader, payloads: list[bytes]) -> int:
    for data in payloads:
        reader.decoder.read(data, reader.frame_indices)
    return len(payloads)


def pyav_full_pass(reader: VideoClipReader, payloads: list[bytes]) -> int:
    for data in payloads:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1  # one thread per worker, as the loader's decoders
            fps = float(stream.average_rate or 0) or DEFAULT_FPS
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        indices = reader.frame_indices(VideoInfo(len(frames), fps))
        np.stack([frames[i] for i in indices])
    return len(payloads)


def timed(run: Callable[[], int]) -> float:
    """Seconds of one pass (torch seeded alike, so every path draws the same clips)."""
    torch.manual_seed(0)
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def figures(videos: int, seconds: dict[str, list[float]], auto: str) -> dict[str, float]:
    """videos/s of each path (median over rounds) and the ratios the issue's targets name:
    the loader's to raw decoding with the decoder ``auto`` chose, torchcodec's to decord's."""
    speed = {path: videos / statistics.median(times) for path, times in seconds.items()}
    result = {
        "videos_per_s": speed["loader"],
        "resized_on_cpu_videos_per_s": speed["loader_resized"],
        **{f"{path}_videos_per_s": speed[path] for path in speed if path.startswith("raw_")},
        "pyav_full_videos_per_s": speed["pyav_full"],
        "ratio_to_raw": speed["loader"] / speed.get(f"raw_{auto}", math.nan),  # nan: PyAV
        "ratio_to_pyav_full": speed["loader"] / speed["pyav_full"],
    }
    if {"raw_decord", "raw_torchcodec"} <= speed.keys():
        result["ratio_torchcodec_to_decord"] = speed["raw_torchcodec"] / speed["raw_decord"]
    return result


def measure(
    store: LmdbStore,
    parts: dict[str, list[str]],
    sampling: FrameSampling,
    decoders: list[str],
    auto: str,
    args: argparse.Namespace,
) -> dict:
    """Figures of one setting over the whole corpus, and per part under ``parts``; the loader
    decodes with ``auto``, the decoder ``decoder=auto`` chose."""
    reader = VideoClipReader(store, build_decoder(), sampling)
    raw = {name: VideoClipReader(store, build_decoder(name), sampling) for name in decoders}
    payloads = {part: [store.get(key) for key in keys] for part, keys in parts.items()}
    seconds: dict[str, dict[str, list[float]]] = {part: {} for part in parts}
    for _ in range(args.rounds):
        for part, keys in parts.items():
            passes = {
                "loader": partial(loader_pass, reader, keys, None, args.batch),
                "loader_resized": partial(loader_pass, reader, keys, args.image_size, args.batch),
                **{
                    f"raw_{name}": partial(raw_pass, raw[name], payloads[part]) for name in decoders
                },
                "pyav_full": partial(pyav_full_pass, reader, payloads[part]),
            }
            for path, run in passes.items():
                seconds[part].setdefault(path, []).append(timed(run))
    whole = {
        path: [sum(rounds) for rounds in zip(*(seconds[p][path] for p in parts), strict=True)]
        for path in seconds[next(iter(parts))]
    }
    result = figures(sum(map(len, parts.values())), whole, auto)
    result["parts"] = {part: figures(len(parts[part]), seconds[part], auto) for part in parts}
    return result


STORES = ("lmdb", "shards", "s3")
STORE_SETTINGS = ("train_1x2", "train_8x2")  # the demo's training setting, the paper's


def shard_stores(
    lmdb: LmdbStore, root: Path, endpoint: str, shard_bytes: int
) -> tuple[dict[str, VisualStore], int]:
    """The LMDB, its copy as local shards, and those shards uploaded to the server at
    ``endpoint``; and the bytes of the remote store's local cache after a full read."""
    shard_store_copy(lmdb, root / "shards", shard_bytes=shard_bytes, progress=False)
    remote = RemoteSettings(endpoint_url=endpoint, cache_dir=str(root / "s3_cache"))
    remote.client().create_bucket(Bucket="bench")
    upload_shards(root / "shards", "s3://bench/videos", remote, progress=False)
    stores = {
        "lmdb": lmdb,
        "shards": open_store(root / "shards"),
        "s3": open_store("s3://bench/videos", remote),
    }
    for key in lmdb.keys():  # noqa: SIM118 (a store, not a dict)
        assert stores["s3"].get(key) == lmdb.get(key)
    cache = sum(f.stat().st_size for f in (root / "s3_cache").rglob("*") if f.is_file())
    return stores, cache


def measure_stores(
    stores: dict[str, VisualStore],
    keys: list[str],
    sampling: FrameSampling,
    args: argparse.Namespace,
    server: S3Server,
) -> dict[str, float]:
    """videos/s of the whole loader reading from each store (median over rounds, the stores
    alternating within each round), each store's ratio to the LMDB, and the CPU time the
    loopback server spends per video (it shares this machine's cores with the loader)."""
    seconds: dict[str, list[float]] = {name: [] for name in stores}
    server_cpu = 0.0
    readers = {name: VideoClipReader(s, build_decoder(), sampling) for name, s in stores.items()}
    for _ in range(args.rounds):
        for name, reader in readers.items():
            run = partial(loader_pass, reader, keys, None, args.batch, args.workers)
            before = server.cpu_seconds()
            seconds[name].append(timed(run))
            if name == "s3":
                server_cpu += server.cpu_seconds() - before
    speed = {name: len(keys) / statistics.median(seconds[name]) for name in stores}
    return {
        **{f"{name}_videos_per_s": speed[name] for name in stores},
        **{f"{name}_to_lmdb": speed[name] / speed["lmdb"] for name in stores if name != "lmdb"},
        "server_cpu_ms_per_video": 1000 * server_cpu / (args.rounds * len(keys)),
        "s3_seconds_per_pass": statistics.median(seconds["s3"]),
        "server_cpu_seconds_per_pass": server_cpu / args.rounds,
    }


def stores_table(results: dict, cache_bytes: int) -> list[str]:
    lines = [
        "| setting | LMDB videos/s | local shards | S3 (loopback) | shards/LMDB | S3/LMDB "
        "| server CPU ms/video |",
        "|" + " --- |" * 7,
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['lmdb_videos_per_s']:.2f} | {r['shards_videos_per_s']:.2f} | "
            f"{r['s3_videos_per_s']:.2f} | {r['shards_to_lmdb']:.2f} | {r['s3_to_lmdb']:.2f} | "
            f"{r['server_cpu_ms_per_video']:.1f} |"
        )
    lines.append("")
    lines.append(f"S3 store's local cache after reading every video: {cache_bytes / 1024:.1f} KiB")
    return lines


def run_stores(args: argparse.Namespace) -> None:
    """``--stores``: the loader over the LMDB, local shards and shards on a loopback server."""
    os.environ.update(CREDENTIALS)
    with tempfile.TemporaryDirectory() as folder, s3_server() as server:
        root = Path(folder)
        lmdb, parts = build_store(root, args.media, args.generated)
        keys = [key for part_keys in parts.values() for key in part_keys]
        stores, cache = shard_stores(lmdb, root, server.endpoint, args.shard_bytes)
        print(f"{len(keys)} videos, {args.workers} loader workers")
        results = {
            name: measure_stores(stores, keys, SETTINGS[name], args, server)
            for name in STORE_SETTINGS
        }
    results_cache = {"s3_cache_bytes": cache}
    lines = stores_table(results, cache)
    print("\n" + "\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({**results, **results_cache}, indent=2) + "\n")
    if not args.no_record:
        title = (
            f"Loader by store, {len(keys)} videos, batch {args.batch}, {args.workers} workers, "
            f"{args.shard_bytes / 1e6:g} MB shards"
        )
        record(title, torch.device("cpu"), lines)


def table(
    results: dict, decoders: list[str], auto: str, first_video: dict[str, float]
) -> list[str]:
    both = {"decord", "torchcodec"} <= set(decoders)
    columns = [
        "setting",
        "corpus",
        f"loader videos/s ({auto})",
        "+ resize on CPU",
        *(f"raw {name}" for name in decoders),
        "PyAV, all frames",
        "loader/raw",
        *(["torchcodec/decord"] if both else []),
        "loader/PyAV",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for name, result in results.items():
        for part, r in {"all": result, **result["parts"]}.items():
            cells = [
                name,
                part,
                r["videos_per_s"],
                r["resized_on_cpu_videos_per_s"],
                *(r[f"raw_{decoder}_videos_per_s"] for decoder in decoders),
                r["pyav_full_videos_per_s"],
                r["ratio_to_raw"],
                *([r["ratio_torchcodec_to_decord"]] if both else []),
                r["ratio_to_pyav_full"],
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    starts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in first_video.items())
    lines += ["", f"First video in a fresh process (imports, library, one decode): {starts}"]
    return lines


def _cell(value: str | float) -> str:
    return value if isinstance(value, str) else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--generated", type=int, default=24, help="10-30 s clips added")
    parser.add_argument("--media", type=Path, default=MEDIA)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (resize)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--stores", action="store_true", help="compare LMDB, shards and S3")
    parser.add_argument("--workers", type=int, default=0, help="--stores: loader workers")
    parser.add_argument("--shard-bytes", type=int, default=64_000_000, help="--stores")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.stores:
        run_stores(args)
        return

    decoders = available_decoders()
    auto = build_decoder("auto", fallback=None).name
    with tempfile.TemporaryDirectory() as folder:
        store, parts = build_store(Path(folder), args.media, args.generated)
        sizes = ", ".join(f"{len(keys)} {part}" for part, keys in parts.items())
        print(f"{sum(map(len, parts.values()))} videos ({sizes}); decoder=auto is {auto}")
        results = {
            name: measure(store, parts, s, decoders, auto, args) for name, s in SETTINGS.items()
        }
        video = Path(folder) / "first.mp4"
        video.write_bytes(store.get(parts[next(iter(parts))][0]))
        first_video = {
            name: first_video_seconds(name, video, args.rounds) for name in [*decoders, "pyav"]
        }
    lines = table(results, decoders, auto, first_video)
    print("\n" + "\n".join(lines))
    if args.json:
        results["first_video_seconds"] = first_video
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_record:
        record(f"Loader, {sizes}, batch {args.batch}", torch.device("cpu"), lines)


if __name__ == "__main__":
    main()
