"""The extraction engine: values, cache, resume after a kill, bad images, pools, the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

pytest.importorskip("torchvision")  # the vision extra: nctk.extract needs it

from torchvision import transforms as T

from nctk.cli import main
from nctk.errors import InputError
from nctk.extract import (
    ModelAdapter,
    extract_features,
    extract_pool,
    load_dataset,
    load_model,
)
from nctk.extract.engine import model_identity
from nctk.io import load_feature_file

TESTS = Path(__file__).resolve().parent


class CountingNet(nn.Module):
    """A small CNN that appends a line to ``counter`` per forward and can be slowed down."""

    def __init__(self, counter: str | None = None, delay: float = 0.0, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(5, 4)
        self.counter = counter
        self.delay = delay

    def forward(self, x):
        if self.counter:
            with open(self.counter, "a") as handle:
                handle.write(f"{x.shape[0]}\n")
        time.sleep(self.delay)
        return self.fc(self.body(x).mean(dim=(2, 3)))


def adapter_for(net: nn.Module, name: str = "net") -> ModelAdapter:
    return ModelAdapter.from_module(net, name=name, transform=T.ToTensor())


def forwards(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


@pytest.fixture
def npz_data(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (22, 6, 6, 3), dtype=np.uint8)
    labels = np.array(["b", "a"] * 11)
    path = tmp_path / "data.npz"
    np.savez(path, images=images, labels=labels)
    return path, images, labels


def test_features_logits_and_layers_equal_a_direct_forward(npz_data):
    path, images, labels = npz_data
    net = CountingNet().eval()
    result = extract_features(adapter_for(net), f"npz:{path}", layers=["body"], batch_size=5,
                              progress=False, num_workers=0)
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        body = net.body(x)
        pooled = body.mean(dim=(2, 3))
        logits = net.fc(pooled)
    assert result.name == "net"
    assert result.features.dtype == np.float32
    np.testing.assert_allclose(result.features, pooled.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.source_logits, logits.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.layers["body"], pooled.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.labels, labels)
    single = extract_features(adapter_for(net), f"npz:{path}", batch_size=64, progress=False,
                              num_workers=1)
    np.testing.assert_allclose(single.features, result.features, rtol=1e-5, atol=1e-6)
    net.train()  # the caller's mode is restored after extraction
    extract_features(adapter_for(net), f"npz:{path}", progress=False, num_workers=0)
    assert net.training


def test_cache_hit_computes_nothing_and_keys_on_content(npz_data, tmp_path):
    path, images, labels = npz_data
    counter = tmp_path / "count.txt"
    cache = tmp_path / "cache"
    net = CountingNet(str(counter))
    first = extract_features(adapter_for(net), f"npz:{path}", batch_size=8, cache_dir=cache,
                             progress=False, num_workers=0)
    assert forwards(counter) == 3
    assert first.path and Path(first.path).parent == cache
    assert not list(cache.glob("*.partial"))
    second = extract_features(adapter_for(net), f"npz:{path}", batch_size=8, cache_dir=cache,
                              progress=False, num_workers=0)
    assert forwards(counter) == 3
    np.testing.assert_array_equal(second.features, first.features)
    np.testing.assert_array_equal(second.labels, labels)
    assert load_feature_file(first.path).features.shape == (22, 5)
    # other layers, other weights and other data content are other keys
    extract_features(adapter_for(net), f"npz:{path}", layers=["body"], batch_size=8,
                     cache_dir=cache, progress=False, num_workers=0)
    assert forwards(counter) == 6
    other = CountingNet(str(counter), seed=1)
    extract_features(adapter_for(other), f"npz:{path}", batch_size=8, cache_dir=cache,
                     progress=False, num_workers=0)
    assert forwards(counter) == 9
    images[0, 0, 0] ^= 255
    np.savez(path, images=images, labels=labels)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    extract_features(adapter_for(net), f"npz:{path}", batch_size=8, cache_dir=cache,
                     progress=False, num_workers=0)
    assert forwards(counter) == 12


def test_identity_follows_the_weights_and_seeded_random_initialisations_repeat():
    first = load_model("timm:test_resnet:none")
    second = load_model("timm:test_resnet:none")
    assert model_identity(first) == model_identity(second)  # seeded: the cache hits
    with torch.no_grad():
        next(second.module.parameters()).add_(1.0)
    assert model_identity(first) != model_identity(second)
    assert model_identity(adapter_for(CountingNet())) == model_identity(
        adapter_for(CountingNet()))


RESUME_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_extract_engine import CountingNet, adapter_for
from nctk.extract import extract_features
net = CountingNet({counter!r}, delay={delay})
extract_features(adapter_for(net), {data!r}, batch_size=4, chunk_batches=2,
                 cache_dir={cache!r}, progress=False, num_workers=0)
"""


def _slow_run_command(tmp_path, data, counter, delay):
    script = RESUME_SCRIPT.format(tests=str(TESTS), counter=str(counter), delay=delay,
                                  data=f"npz:{data}", cache=str(tmp_path / "cache"))
    return [sys.executable, "-c", script]


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_chunks(npz_data, tmp_path):
    path, _, labels = npz_data  # 22 images, batches of 4: 6 batches, chunks of 2 batches
    partial = tmp_path / "cache"
    slow = subprocess.Popen(_slow_run_command(tmp_path, path, tmp_path / "first.txt", 0.4),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(list(partial.glob("*.partial/chunk-*.npz"))) < 1 and time.time() < deadline:
        if slow.poll() is not None:
            pytest.fail(f"the slowed run ended early: {slow.stderr.read().decode()[-500:]}")
        time.sleep(0.05)
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    slow.stderr.close()
    chunks = len(list(partial.glob("*.partial/chunk-*.npz")))
    assert 1 <= chunks < 3
    assert not list(partial.glob("*.npz"))  # nothing finished
    counter = tmp_path / "second.txt"
    resumed = extract_features(adapter_for(CountingNet(str(counter))), f"npz:{path}",
                               batch_size=4, chunk_batches=2, cache_dir=partial,
                               progress=False, num_workers=0)
    assert forwards(counter) == 6 - 2 * chunks
    assert not list(partial.glob("*.partial"))
    reference = extract_features(adapter_for(CountingNet()), f"npz:{path}", batch_size=4,
                                 progress=False, num_workers=0)
    np.testing.assert_allclose(resumed.features, reference.features, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(resumed.source_logits, reference.source_logits, rtol=1e-6,
                               atol=1e-7)
    np.testing.assert_array_equal(resumed.labels, labels)


def make_folder(root: Path, counts: dict[str, int], bad: dict[str, int] | None = None) -> Path:
    rng = np.random.default_rng(2)
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(
                root / name / f"{i}.png")
        for i in range((bad or {}).get(name, 0)):
            (root / name / f"zz{i}.jpg").write_bytes(b"\xff\xd8garbage")
    return root


def test_bad_images_fail_or_are_skipped_and_counted(tmp_path, caplog):
    folder = make_folder(tmp_path / "imgs", {"a": 3, "b": 3}, bad={"b": 2})
    adapter = adapter_for(CountingNet())
    with pytest.raises(InputError, match=r"zz0\.jpg: cannot read image"):
        extract_features(adapter, f"imagefolder:{folder}", progress=False, num_workers=0)
    result = extract_features(adapter, f"imagefolder:{folder}", batch_size=2, progress=False,
                              num_workers=0, skip_bad_images=True)
    assert result.labels.tolist() == ["a", "a", "a", "b", "b", "b"]
    assert "skipped 2 unreadable image(s)" in caplog.text  # logged (the CLI shows it)
    one_good_class = make_folder(tmp_path / "one", {"a": 2, "b": 0}, bad={"b": 2})
    with pytest.raises(InputError, match=r"2 unreadable image\(s\) skipped.*1 class"):
        extract_features(adapter, f"imagefolder:{one_good_class}", progress=False,
                         num_workers=0, skip_bad_images=True)


def test_cuda_request_without_gpu_falls_back_with_a_notice(npz_data, caplog):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    path, _, _ = npz_data
    result = extract_features(adapter_for(CountingNet()), f"npz:{path}", device="cuda",
                              progress=False, num_workers=0)
    assert result.features.shape == (22, 5)
    assert "no GPU: falls back to CPU" in caplog.text  # logged (the CLI shows it)
    with pytest.raises(InputError, match="unknown device"):
        extract_features(adapter_for(CountingNet()), f"npz:{path}", device="tpu9")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_agrees_with_cpu(npz_data):
    path, _, _ = npz_data
    cpu = extract_features(adapter_for(CountingNet()), f"npz:{path}", device="cpu",
                           progress=False)
    gpu = extract_features(adapter_for(CountingNet()), f"npz:{path}", device="cuda",
                           progress=False)
    np.testing.assert_allclose(gpu.features, cpu.features, rtol=0.05, atol=0.02)


def test_extract_pool_shares_one_subsample(npz_data, tmp_path):
    path, _, _ = npz_data
    data = load_dataset(f"npz:{path}")
    pool = extract_pool([adapter_for(CountingNet(), "m1"), adapter_for(CountingNet(seed=3), "m2")],
                        data, per_class=4, seed=5, progress=False, num_workers=0)
    assert [f.name for f in pool] == ["m1", "m2"]
    assert pool[0].features.shape == (8, 5)
    np.testing.assert_array_equal(pool[0].labels, pool[1].labels)
    with pytest.raises(InputError, match=r"are both named 'm1'.*distinct names"):
        extract_pool([adapter_for(CountingNet(), "m1"), adapter_for(CountingNet(), "m1")],
                     data, progress=False, num_workers=0)
    with pytest.raises(InputError, match="no models given"):
        extract_pool("", data)


def test_cli_writes_one_file_per_model(tmp_path, capsys):
    folder = make_folder(tmp_path / "imgs", {"a": 3, "b": 3}, bad={"a": 1})
    torch.save(CountingNet(), tmp_path / "small.pt")
    out = tmp_path / "out"
    common = ["--data", f"imagefolder:{folder}", "--out", str(out), "--no-progress",
              "--workers", "0", "--cache-dir", str(tmp_path / "cache"), "--image-size", "8",
              "--trust-checkpoint"]
    assert main(["extract", "--models", str(tmp_path / "small.pt"), *common]) == 2
    assert "zz0.jpg: cannot read image" in capsys.readouterr().err
    models = f"{tmp_path / 'small.pt'},timm:test_resnet:none"
    assert main(["extract", "--models", models, *common, "--layers", "layer4"]) == 2
    assert "has no layer 'layer4'" in capsys.readouterr().err
    assert main(["extract", "--models", models, *common, "--skip-bad-images", "--per-class",
                 "5", "--seed", "3"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 unreadable image(s)" in captured.err
    small = load_feature_file(out / "small.npz")
    resnet = load_feature_file(out / "test_resnet.none.npz")
    assert small.features.shape == (6, 5) and small.source_logits.shape == (6, 4)
    assert resnet.features.shape == (6, 96) and resnet.source_logits.shape == (6, 1000)
    np.testing.assert_array_equal(small.labels, resnet.labels)


def test_cli_bad_input_exits_2(tmp_path, capsys):
    folder = make_folder(tmp_path / "imgs", {"a": 2, "b": 2})
    common = ["--out", str(tmp_path / "out"), "--no-cache", "--no-progress"]
    cases = [
        (["--models", "torchvision:resnet18:NOPE", "--data", f"imagefolder:{folder}"],
         "unknown weights 'NOPE'"),
        (["--models", "mystery:net", "--data", f"imagefolder:{folder}"],
         "accepted kinds: torchvision:, timm:"),
        (["--models", "torchvision:resnet18:none", "--data", f"imagefolder:{tmp_path / 'none'}"],
         "no such directory"),
        (["--models", "torchvision:resnet18:none",
          "--data", f"imagefolder:{make_folder(tmp_path / 'one', {'a': 2})}"],
         "1 class(es)"),
    ]
    for args, message in cases:
        assert main(["extract", *args, *common]) == 2
        err = capsys.readouterr().err
        assert message in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
