"""Pool runs: the loop executor against Ray on this machine, Ray's overhead per task, and
a projection to N workers (GPUs).

Models: the 9 shipped demo networks, repeated under new names up to ``--models`` (18 by
default: the same weights twice, each copy a separate unit of work). Data: ``--images``
CIFAR-10 test JPEGs written as an image folder (random JPEGs when the shared data is
absent), so the Ray runs also pack the folder into the object store. Every run scores
with NCTI and LogME and uses no cache (everything is computed).

Printed:

1. wall time of ``rank_models`` with the loop executor (torch's default threads, and one
   thread), and with Ray on a local instance of ``--cpus`` CPUs (1 CPU per task): the
   first run (workers start and import torch) and a second one (warm workers); Ray's
   start-up separately;
2. Ray's overhead: a no-op task that receives the shared dataset (latency one at a time,
   and per task when ``--noop`` tasks run at once), the size of what is put once in the
   object store, and the overhead per model in the warm run: (wall - ideal) / models per
   slot, the ideal being Ray's own FIFO schedule of the in-task times over the slots;
3. the projection: T(S) = t_start + makespan of {t_i + o} in submission order over S
   slots (greedy FIFO, what Ray's scheduler does with equal tasks), t_i the measured
   in-task time of each model, o the measured overhead per task, t_start Ray's start-up
   plus one worker warm-up; for the measured pool and for a 300-model pool made of the
   same per-model times, and for 300-model pools of equal per-model times
   ``--project-times`` (what one model takes on one GPU slot; S = GPUs / gpus-per-model).

    python benchmarks/bench_scale.py [--models 18] [--images 1000] [--cpus 2]
"""

from __future__ import annotations

import argparse
import heapq
import logging
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import torch

import nctk.transfer  # noqa: F401  (registers the methods)
from bench_extract import CIFAR, write_image_folder
from nctk.demo.models import pool_names
from nctk.demo.run import image_transform, load_demo_model
from nctk.extract import ModelAdapter, load_dataset
from nctk.scale import ExtractSettings, LoopExecutor, RayExecutor, rank_models

METHODS = ["ncti", "logme"]


def adapters(count: int) -> list[ModelAdapter]:
    """The demo pool repeated under new names up to ``count`` models."""
    names = pool_names()
    out = []
    for i in range(count):
        name = names[i % len(names)]
        module = load_demo_model(name)
        suffix = "" if i < len(names) else f"_{i // len(names) + 1}"
        out.append(ModelAdapter.from_module(module, name=name + suffix,
                                            transform=image_transform(), head=module.head))
    return out


def timed_run(models, data, executor) -> tuple[float, list]:
    start = time.perf_counter()
    run = rank_models(models, data, METHODS, executor=executor,
                      extract=ExtractSettings(num_workers=0), progress=False)
    wall = time.perf_counter() - start
    if run.failures:
        raise SystemExit(f"failed: {[(r.spec, r.error) for r in run.failures]}")
    return wall, run.records


def in_task_seconds(record) -> float:
    return record.extract_seconds + sum(record.seconds.values())


def makespan(times: list[float], slots: int) -> float:
    """Greedy FIFO list schedule: each task in order goes to the first free slot."""
    free = [0.0] * slots
    for t in times:
        heapq.heappush(free, heapq.heappop(free) + t)
    return max(free)


def noop(shared, item):
    return item


def overheads(ray, shared, count: int) -> tuple[float, float]:
    """(latency of one no-op task at a time, wall per task of ``count`` at once); every
    task gets a reference to ``shared``, put once in the object store."""
    task = ray.remote(noop).options(num_cpus=1)
    ref = ray.put(shared)
    ray.get([task.remote(ref, i) for i in range(4)])  # the workers are warm
    start = time.perf_counter()
    for i in range(20):
        ray.get(task.remote(ref, i))
    latency = (time.perf_counter() - start) / 20
    start = time.perf_counter()
    ray.get([task.remote(ref, i) for i in range(count)])
    return latency, (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=18)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--noop", type=int, default=200)
    parser.add_argument("--cifar", type=Path, default=CIFAR)
    parser.add_argument("--project-times", type=lambda text: [float(t) for t in text.split(",")],
                        default=[1.0, 10.0, 60.0], metavar="T,T,...",
                        help="per-model seconds of the equal-time pools projected (e.g. a "
                             "model's extraction time on one GPU)")
    args = parser.parse_args()
    import ray

    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray.__version__}, "
          f"python {sys.version.split()[0]}; load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        source = write_image_folder(Path(tmp), args.images, args.cifar)
        data = load_dataset(f"imagefolder:{tmp}")
        packed = data.packed()
        print(f"data: {source}; packed for Ray: {len(pickle.dumps(packed)) / 1e6:.2f} MB "
              f"(put once in the object store)")
        models = adapters(args.models)
        print(f"models: {len(models)} ({len(pool_names())} demo networks"
              f"{', repeated' if len(models) > len(pool_names()) else ''}); methods "
              f"{', '.join(METHODS)}; no cache")

        timed_run(models[:2], data, LoopExecutor())  # first-call costs out of the timings
        loop_wall, _ = timed_run(models, data, LoopExecutor())
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        loop1_wall, loop1_records = timed_run(models, data, LoopExecutor())
        torch.set_num_threads(threads)
        print(f"loop, {threads} torch threads: {loop_wall:7.2f} s")
        print(f"loop, 1 torch thread:  {loop1_wall:7.2f} s  (sum of in-task times "
              f"{sum(map(in_task_seconds, loop1_records)):.2f} s)")

        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING)
        ray_start = time.perf_counter() - start
        try:
            with RayExecutor(cpus_per_task=1) as executor:
                slots = executor.parallelism()
                cold_wall, _ = timed_run(models, data, executor)
                warm_wall, records = timed_run(models, data, executor)
                latency, per_task = overheads(ray, packed, args.noop)
        finally:
            ray.shutdown()
        times = [in_task_seconds(r) for r in records]
        ideal = makespan(times, slots)
        per_model = (warm_wall - ideal) / (len(models) / slots)
        print(f"ray start-up ({args.cpus} CPUs): {ray_start:.2f} s")
        print(f"ray, {slots} tasks at once, first run (cold workers): {cold_wall:7.2f} s "
              f"(+ start-up {ray_start:.2f} s = {cold_wall + ray_start:.2f} s)")
        print(f"ray, second run (warm workers):               {warm_wall:7.2f} s; "
              f"speed-up over the loop {loop_wall / warm_wall:.2f}x "
              f"({loop_wall / (cold_wall + ray_start):.2f}x counting start-up and warm-up)")
        print(f"in-task times (1 thread): sum {sum(times):.2f} s, mean "
              f"{sum(times) / len(times):.3f} s, max {max(times):.3f} s; ideal FIFO schedule "
              f"over {slots} slots {ideal:.2f} s")
        print(f"overhead: no-op task with the dataset reference {latency * 1e3:.1f} ms one at "
              f"a time, {per_task * 1e3:.2f} ms per task with {args.noop} at once; "
              f"per model in the warm run {per_model * 1e3:.0f} ms")

    fixed = ray_start + (cold_wall - warm_wall)
    overhead = max(per_model, per_task)
    print(f"\nprojection T(S) = {fixed:.1f} s (start-up + warm-up) + FIFO makespan of "
          f"(t_i + {overhead * 1e3:.0f} ms) over S slots; speed-up = sum t_i / T(S)")
    pools = {f"measured ({len(times)} models)": times,
             "300 models (measured times repeated)": [times[i % len(times)]
                                                      for i in range(300)]}
    pools.update({f"300 models of {t:g} s each": [t] * 300 for t in args.project_times})
    for label, pool in pools.items():
        print(f"  {label}: sum t_i = {sum(pool):.1f} s")
        for s in (1, 2, 4, 8, 16, 32, 64, 128):
            total = fixed + makespan([t + overhead for t in pool], s)
            print(f"    S={s:3d}: T = {total:8.1f} s, speed-up {sum(pool) / total:6.2f}, "
                  f"efficiency {sum(pool) / total / s:5.1%}")


if __name__ == "__main__":
    main()
