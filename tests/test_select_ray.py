"""``nctk select`` on a local 2-CPU Ray instance (started once for this module): with its
rung runs as Ray tasks the synchronous schedule is the same pure function as in the loop,
so both pick the same model with the same rung table and curves, float for float (one
thread each); ``--schedule asha`` runs the shortlist as Ray Tune trials under ASHA."""

from __future__ import annotations

import logging

import pytest
import torch
from threadpoolctl import threadpool_limits

pytest.importorskip("torchvision")  # the vision extra: nctk.scale needs it
ray = pytest.importorskip("ray")  # the ray extra

from nctk.finetune.train import TrainConfig
from nctk.scale import LoopExecutor, RayExecutor
from nctk.select.api import prepare, select
from select_data import MODELS, write_npz

pytestmark = pytest.mark.slow

CONFIG = TrainConfig(epochs=3, batch_size=16, lr=0.05, val_fraction=0.25, progress=False)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             object_store_memory=200 << 20)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "train.npz", 8)


def test_ray_tasks_pick_what_the_loop_picks(cluster, data, tmp_path):
    options = dict(budget="2.5", config=CONFIG, cache_dir=str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a Ray task of 1 CPU runs torch on one thread
    try:
        with threadpool_limits(1):
            loop = select(list(MODELS), data, executor=LoopExecutor(),
                          out_dir=tmp_path / "loop", **options)
    finally:
        torch.set_num_threads(threads)
    with RayExecutor() as executor:
        remote = select(list(MODELS), data, executor=executor, out_dir=tmp_path / "ray",
                        **options)
    assert remote.pick == loop.pick
    assert remote.schedule.to_json() == loop.schedule.to_json()
    assert remote.curves == loop.curves


def test_asha_trials_reach_the_last_rung_with_the_pick(cluster, data, tmp_path):
    from nctk.select.asha import run_asha

    with RayExecutor() as executor:
        prepared = prepare(list(MODELS[:2]), data, budget="5", config=CONFIG,
                           executor=executor, out_dir=tmp_path / "asha",
                           cache_dir=str(tmp_path / "cache"))
        chosen = run_asha(prepared)
    rows = {r.model: r for r in chosen.schedule.rows}
    assert set(rows) == {"cnn_small", "mlp"} and chosen.pick in rows
    assert rows[chosen.pick].epochs == 3 and rows[chosen.pick].dropped_at is None
    assert chosen.curves[chosen.pick] and len(chosen.curves[chosen.pick]) == 3
    assert rows[chosen.pick].scores[-1] == max(chosen.curves[chosen.pick])
    assert chosen.weights.is_file()
