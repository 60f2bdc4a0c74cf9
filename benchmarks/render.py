"""Channel visualizations: a layer's 30 explorer tiles rendered as batches against one at a
time, in the same run, with the real weights and the real render settings.

Both ways render through `explore.channels` into an empty temporary cache, so every tile is
optimized now: one at a time is `channel_image` per channel (what the page asked for before:
one optimization per tile); batched is `channel_images` for the layer's channels (one
optimization per batch of `RENDER_BATCH` channels, each image with its own objective). The
work is interleaved by batch (a batch, then the same channels one at a time) so that a busy
moment of a shared machine falls on both alike; both are warmed up first (the CPU kernels
are prepared for each batch size once per process). Besides wall seconds it prints CPU
seconds (less sensitive to other people's load) and, per channel, how much the batched
picture differs from the single one and how strongly each excites its channel.

Run:  python benchmarks/render.py    (lite0's feature layer `_head_act`, 128 steps: about
      5 minutes on 2 cores; --steps 16 for a quick look, the ratio is per step)
Last line: `render_batch_speedup=<x>` (wall seconds one at a time / batched).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from semsearch.config import resolve
from semsearch.explore.channels import (
    RENDER_BATCH,
    ChannelImage,
    channel_image,
    channel_images,
)
from semsearch.explore.visualize import RenderSettings, render_channels
from semsearch.session import Session

T = TypeVar("T")


def timed(work: Callable[[], T]) -> tuple[T, float, float]:
    """Gives (result, wall seconds, CPU seconds) of work()."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="lite0")
    ap.add_argument("--layer", default=None, help="default: the model's feature layer")
    ap.add_argument("--channels", type=int, default=30, help="tiles of the layer (the page "
                    "shows 30)")
    ap.add_argument("--steps", type=int, default=RenderSettings().steps)
    ap.add_argument("--batch", type=int, default=RENDER_BATCH, help="channels per batch")
    ap.add_argument("--search", type=Path, default=None, metavar="FOLDER", help="first index "
                    "FOLDER (e.g. ../shared/datasets/iconic200) with the model and time searches "
                    "by one of its images (embedded each time) idle and while the server's "
                    "render worker renders other channels of the layer")
    args = ap.parse_args()
    settings = replace(RenderSettings(), steps=args.steps)
    with tempfile.TemporaryDirectory(prefix="semsearch-render-") as tmp:
        config = resolve({"db": str(Path(tmp) / "cat.db"), "cache_dir": tmp}, env={})
        with Session(config) as session:
            spec = session.models.spec(args.model)
            layer = args.layer or spec.default_layer
            net, _ = session.models.network(args.model)
            for n in sorted({1, min(args.batch, args.channels)}):  # warm-up
                render_channels(net, layer, list(range(n)), mean=spec.mean, std=spec.std,
                                input_size=spec.preprocess.size,
                                settings=replace(settings, steps=2))
            if args.search is not None:
                searches_while_rendering(session, args.model, layer, args.search,
                                         range(args.channels, args.channels + 30))
            print(f"{args.model} {layer}: {args.channels} channels, {args.steps} steps, "
                  f"{settings.size or spec.preprocess.size} px, batches of {args.batch}, "
                  f"torch threads {torch.get_num_threads()}", flush=True)
            batched_s = batched_cpu = single_s = single_cpu = 0.0
            batched: list[npt.NDArray[np.float32]] = []
            single: list[npt.NDArray[np.float32]] = []
            ratios: list[float] = []
            for start in range(0, args.channels, args.batch):
                chunk = list(range(start, min(start + args.batch, args.channels)))
                made, wall, cpu = timed(partial(channel_images, session, args.model, layer,
                                                chunk, settings, batch=args.batch))
                batched += [picture(item) for item in made]
                batched_s, batched_cpu, batched_wall = batched_s + wall, batched_cpu + cpu, wall
                print(f"  channels {chunk[0]}-{chunk[-1]}: batched {wall:.1f}s", end="",
                      flush=True)
                # The same pictures again, one optimization each: the batch's files are
                # read and removed first, so none is found in the cache.
                made, wall, cpu = timed(partial(one_at_a_time, session, args.model, layer,
                                                chunk, settings))
                single += [picture(item) for item in made]
                single_s, single_cpu = single_s + wall, single_cpu + cpu
                ratios.append(wall / batched_wall)
                print(f", one at a time {wall:.1f}s", flush=True)
            report(net, layer, spec.mean, spec.std, batched, single)
    print(f"batched {batched_s:.1f}s wall {batched_cpu:.1f}s CPU; one at a time "
          f"{single_s:.1f}s wall {single_cpu:.1f}s CPU; per tile "
          f"{batched_s / args.channels:.2f}s against {single_s / args.channels:.2f}s")
    print(f"per batch, one at a time / batched: {' '.join(f'{r:.2f}' for r in ratios)} "
          f"(median {statistics.median(ratios):.2f}; a busy moment of the machine shows here)")
    print(f"render_batch_cpu_ratio={single_cpu / batched_cpu:.2f}")
    print(f"render_batch_speedup={single_s / batched_s:.2f}")


def searches_while_rendering(session: Session, model: str, layer: str, folder: Path,
                             channels: range, searches: int = 40) -> None:
    """Prints the p50 of a search by image (embedded each time, as an upload is) when idle
    and while the render worker (lowest CPU priority, as in `serve`) renders channels."""
    from semsearch.explore.renders import Renderer

    fs = session.feature_set(model)
    session.index(str(folder), feature_set=fs)
    source = next(p for p in sorted(folder.rglob("*")) if p.suffix.lower() in
                  (".jpg", ".jpeg", ".png"))
    # A mirrored copy outside the collection: not an indexed image, so every search embeds.
    query = str(session.config.cache_path() / "query.png")
    with Image.open(source) as im:
        im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(query)

    def p50() -> float:
        times = []
        for _ in range(searches):
            started = time.perf_counter()
            session.search(query, feature_set=fs)
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000

    session.search(query, feature_set=fs)  # warm-up
    idle = p50()
    renderer = Renderer(session)
    job = renderer.submit(model, layer, channels)
    while job.steps_done < 2:  # rendering for sure, the network built
        time.sleep(0.05)
    busy = p50()
    still = job.active
    renderer.close()
    print(f"search by image p50: idle {idle:.1f} ms, while rendering {busy:.1f} ms "
          f"({'rendering throughout' if still else 'the render ended first'}); "
          f"render_search_p50_ratio={busy / idle:.2f}", flush=True)


def one_at_a_time(session: Session, model: str, layer: str, channels: list[int],
                  settings: RenderSettings) -> list[ChannelImage]:
    """Gives the channels' pictures, one optimization each."""
    return [channel_image(session, model, layer, c, settings) for c in channels]


def picture(item: ChannelImage) -> npt.NDArray[np.float32]:
    """Gives a rendered channel's pixels, and removes its cached files."""
    with Image.open(item.path) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.float32)
    item.path.unlink()
    item.path.with_suffix(".json").unlink()
    return pixels


def objectives(net: torch.nn.Module, layer: str, mean: object, std: object,
               pictures: list[npt.NDArray[np.float32]]) -> list[float]:
    """Gives each picture's objective for its own channel (picture i, channel i): the mean
    of the layer's map, before the ReLU for an activation layer (a ReLU6 output saturates
    at 6 and would hide a difference)."""
    module = dict(net.named_modules())[layer]
    seen: list[torch.Tensor] = []
    relu = isinstance(module, torch.nn.ReLU | torch.nn.ReLU6)
    handle = module.register_forward_hook(
        lambda _m, inputs, output: seen.append(inputs[0] if relu else output))
    try:
        with torch.no_grad():
            x = torch.tensor(np.stack(pictures)).permute(0, 3, 1, 2)
            m = torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
            s = torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
            net((x - m) / s)
    finally:
        handle.remove()
    maps = seen[0]
    return [float(maps[i, i].mean()) for i in range(len(pictures))]


def report(net: torch.nn.Module, layer: str, mean: object, std: object,
           batched: list[npt.NDArray[np.float32]],
           single: list[npt.NDArray[np.float32]]) -> None:
    """Prints how alike the batched and single pictures are, channel by channel: in their
    pixels, and in how strongly each excites its channel."""
    diffs = [float(np.abs(a - b).mean()) for a, b in zip(batched, single, strict=True)]
    ours = objectives(net, layer, mean, std, batched)
    theirs = objectives(net, layer, mean, std, single)
    ratios = [a / b for a, b in zip(ours, theirs, strict=True) if b > 0]
    higher = sum(a > b for a, b in zip(ours, theirs, strict=True))
    print(f"pictures: mean |batched - single| per pixel {statistics.median(diffs):.2f} of 255 "
          f"(median over channels, max {max(diffs):.2f}); the channel's objective, batched "
          f"against single: median ratio {statistics.median(ratios):.3f} (min "
          f"{min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} channels with a positive "
          f"single objective); batched higher for {higher} "
          f"of {len(ours)}")


if __name__ == "__main__":
    if not Path(__file__).resolve().parents[1].joinpath("src").is_dir():
        sys.exit("run from a checkout")
    main()
