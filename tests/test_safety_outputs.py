"""No input is ever overwritten, and only regular files are replaced (issue 8, points 1-2).

Every refusal is exit status 2 with one line on stderr, and every input keeps its bytes
and modification time. The device-node and foreign-owner cases need root and use nodes
and files made here, never the system's own.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nctk.io
from nctk.cli import main
from nctk.errors import InputError
from nctk.io import atomic_path, write_json
from nctk.paths import Input, Output, check_outputs, replaceable, same_file

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def pool(tmp_path):
    """Three feature files, their source-data files and a ground truth."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 8)
    feats, sources = [], []
    for name in ("m0", "m1", "m2"):
        for folder, bucket in (("target", feats), ("source", sources)):
            path = tmp_path / folder / f"{name}.npz"
            path.parent.mkdir(exist_ok=True)
            np.savez(path, features=rng.normal(size=(24, 5)) + labels[:, None], labels=labels)
            bucket.append(path)
    truth = tmp_path / "gt.json"
    truth.write_text(json.dumps({"m0": 0.5, "m1": 0.7, "m2": 0.6}))
    return feats, sources, truth


def _state(*paths):
    """Bytes, mtime and file type of each path (what must not change)."""
    result = {}
    for path in paths:
        info = os.lstat(path)
        data = Path(path).read_bytes() if stat.S_ISREG(info.st_mode) else None
        result[str(path)] = (stat.S_IFMT(info.st_mode), data, info.st_mtime_ns)
    return result


def _refused(capsys, argv, protected, *needles, before_work=True):
    """Run the CLI: exit 2, one stderr line holding ``needles``, ``protected`` untouched;
    ``before_work``: refused before anything was computed (nothing on stdout)."""
    before = _state(*protected)
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert out == "" or not before_work, out
    assert err.startswith(f"nctk {argv[0]}: error: ") and "Traceback" not in err
    for needle in needles:
        assert str(needle) in err, err
    assert _state(*protected) == before
    return err


def _no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob("*.tmp")], list(folder.rglob("*.tmp"))


# ------------------------------------------------------------- point 1: outputs vs inputs


def test_collapse_json_onto_its_feature_file(pool, capsys):
    feats, _, _ = pool
    _refused(capsys, ["collapse", feats[0], "--json", feats[0]], feats,
             "--json", "refusing to overwrite")


def test_collapse_json_onto_the_ground_truth(pool, capsys):
    feats, _, truth = pool
    _refused(capsys, ["collapse", *feats, "--ground-truth", truth, "--json", truth],
             [*feats, truth], f"is the input {truth} (--ground-truth)")


def test_collapse_plot_onto_the_classifier(pool, capsys, tmp_path):
    feats, _, _ = pool
    head = tmp_path / "head.png"
    np.save(tmp_path / "w.npy", np.ones((3, 5)))
    os.replace(tmp_path / "w.npy", head)  # a .npy weight, oddly named
    _refused(capsys, ["collapse", feats[0], "--classifier", head, "--plot", head], [head],
             "--plot", "(--classifier)")


def test_analyze_source_json_onto_a_source_file(pool, capsys):
    feats, sources, truth = pool
    _refused(capsys, ["analyze", "source", *feats, "--ground-truth", truth, "--source",
                      *sources, "--json", sources[1]], [*feats, *sources, truth],
             "(--source)")


def test_rank_json_through_a_symlink_a_hard_link_and_dotdot(pool, capsys, tmp_path):
    feats, _, truth = pool
    link = tmp_path / "link.json"
    link.symlink_to(feats[1])
    hard = tmp_path / "hard.json"
    os.link(truth, hard)
    dotdot = tmp_path / "target" / ".." / "target" / "m2.npz"
    for output in (link, hard, dotdot):
        _refused(capsys, ["rank", *feats, "--ground-truth", truth, "--method", "ncti",
                          "--json", output], [*feats, truth, link, hard],
                 "refusing to overwrite")


def test_rank_two_outputs_on_one_file(pool, capsys, tmp_path):
    feats, _, _ = pool
    out = tmp_path / "both"
    _refused(capsys, ["rank", *feats, "--json", out, "--report", out], feats,
             "--report", "is also the output of --json")
    assert not out.exists()


def test_extract_out_onto_an_npz_dataset(capsys, tmp_path):
    pytest.importorskip("torchvision")  # extraction needs the vision extra
    folder = tmp_path / "work"
    folder.mkdir()
    data = folder / "net.npz"
    np.savez(data, images=np.zeros((4, 8, 8, 3), np.uint8), labels=np.array([0, 0, 1, 1]))
    _refused(capsys, ["extract", "--models", "file:net.pt", "--data", f"npz:{data}",
                      "--out", folder, "--no-cache"], [data],
             "--out", "writes *.npz files there", "(--data)")


def test_extract_out_or_cache_inside_the_image_folder(capsys, tmp_path):
    pytest.importorskip("torchvision")  # extraction needs the vision extra
    images = tmp_path / "images"
    (images / "cat").mkdir(parents=True)
    (images / "cat" / "0.png").write_bytes(b"png")
    for extra in (["--out", images / "features", "--no-cache"],
                  ["--out", tmp_path / "features", "--cache-dir", images / "cache"]):
        _refused(capsys, ["extract", "--models", "timm:test_resnet:none",
                          "--data", f"imagefolder:{images}", *extra],
                 [images / "cat" / "0.png"], "lies inside the input folder")
    assert sorted(p.name for p in images.iterdir()) == ["cat"]


def test_finetune_out_onto_its_own_model(capsys, tmp_path):
    pytest.importorskip("torchvision")  # extraction needs the vision extra
    run = tmp_path / "run"
    run.mkdir()
    model = run / "checkpoint.pt"
    model.write_bytes(b"a model the user keeps here")
    data = tmp_path / "d.npz"
    np.savez(data, images=np.zeros((4, 8, 8, 3), np.uint8), labels=np.array([0, 0, 1, 1]))
    _refused(capsys, ["finetune", "--model", model, "--data", f"npz:{data}", "--method", "lp",
                      "--out", run], [model, data], "(--model)")
    # a sweep writes <method>_unit<k>/checkpoint.pt: a model there is refused too
    nested = run / "layer_unit3" / "checkpoint.pt"
    nested.parent.mkdir()
    shutil.copy(model, nested)
    _refused(capsys, ["finetune", "--model", nested, "--data", f"npz:{data}", "--sweep",
                      "--out", run], [nested], "layer_unit*/checkpoint.pt")


def test_demo_out_onto_the_shipped_assets(capsys, tmp_path, monkeypatch):
    import nctk.demo.assets

    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "ground_truth.json").write_text("{}")
    monkeypatch.setattr(nctk.demo.assets, "ASSETS", assets)
    _refused(capsys, ["demo", "--out", assets], [assets / "ground_truth.json"],
             "the shipped demo assets")


def test_check_outputs_allows_what_collides_with_nothing(tmp_path):
    a = tmp_path / "a.npz"
    a.write_bytes(b"x")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "other.txt").write_text("kept")
    check_outputs([Output("--json", tmp_path / "new.json"), Output("--json", None),
                   Output("--json", "-"), Output("--out", folder, names=("*.npz",))],
                  [Input("FEATURES.npz", a)])
    assert same_file(a, tmp_path / "x" / ".." / "a.npz")
    assert not same_file(a, tmp_path / "new.json")


# ------------------------------------------------------- point 2: only regular files


def test_json_onto_a_fifo_is_refused_before_any_work(pool, capsys, tmp_path):
    feats, _, _ = pool
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _refused(capsys, ["rank", *feats, "--json", fifo], [*feats, fifo],
             "is a FIFO, not a regular file; refusing to replace it")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(not ROOT, reason="creating a device node needs root")
def test_json_onto_a_device_node_is_refused(pool, capsys, tmp_path):
    feats, _, _ = pool
    null = tmp_path / "null"  # a private null device, never /dev/null itself
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    _refused(capsys, ["collapse", feats[0], "--json", null], [feats[0], null],
             "is a device node")
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    with pytest.raises(InputError, match="is a device node"):  # the writer itself refuses
        write_json(null, {})
    assert stat.S_ISCHR(os.lstat(null).st_mode)


def test_directories_dangling_links_and_links_to_fifos_are_refused(pool, capsys, tmp_path):
    feats, _, _ = pool
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    to_fifo = tmp_path / "to_fifo"
    to_fifo.symlink_to(fifo)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "missing.json")
    cases = {tmp_path: "is a directory", to_fifo: "is a symbolic link to a FIFO",
             dangling: "symbolic link to a missing file"}
    for path, needle in cases.items():
        _refused(capsys, ["rank", *feats, "--json", path], [*feats, to_fifo, dangling], needle)
    assert not (tmp_path / "missing.json").exists()


@pytest.mark.skipif(not ROOT, reason="giving a file to another user needs root")
def test_symlink_to_another_users_file_is_refused(pool, capsys, tmp_path):
    feats, _, _ = pool
    theirs = tmp_path / "theirs.json"
    theirs.write_text("their data")
    os.chown(theirs, 65534, 65534)
    link = tmp_path / "link.json"
    link.symlink_to(theirs)
    _refused(capsys, ["rank", *feats, "--json", link], [theirs, link],
             "symbolic link to a file of another user")


def test_symlink_to_own_file_replaces_the_target_and_keeps_the_link(pool, capsys, tmp_path):
    feats, _, _ = pool
    target = tmp_path / "results" / "scores.json"
    target.parent.mkdir()
    target.write_text("old")
    os.chmod(target, 0o640)
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    assert main(["rank", *map(str, feats), "--json", str(link)]) == 0
    capsys.readouterr()
    assert link.is_symlink() and replaceable(link) == target
    assert "methods" in json.loads(target.read_text())
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640  # permissions kept
    _no_temporaries(tmp_path)


def test_json_dash_is_standard_output_and_nothing_else(pool, capsys):
    feats, _, truth = pool
    runs = [["rank", *feats, "--ground-truth", truth, "--method", "ncti,logme"],
            ["collapse", feats[0]],
            ["analyze", "ablation", *feats, "--ground-truth", truth]]
    keys = [{"methods", "evaluation"}, {"layers"}, {"analysis", "method", "ablation"}]
    for argv, expected in zip(runs, keys, strict=True):
        assert main([str(a) for a in argv] + ["--json", "-"]) == 0
        out, err = capsys.readouterr()
        assert expected <= set(json.loads(out))  # stdout holds exactly one JSON document
        assert err.strip(), "the tables go to stderr"
    assert not Path("-").exists()


def test_disk_full_is_exit_2_naming_the_file_and_keeping_the_old_one(pool, capsys, tmp_path,
                                                                      monkeypatch):
    feats, _, _ = pool
    out = tmp_path / "scores.json"
    out.write_text("previous result")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(nctk.io.os, "fsync", full)
    err = _refused(capsys, ["rank", *feats, "--json", out], [*feats, out],
                   f"{out}: No space left on device", before_work=False)
    assert ".tmp" not in err
    _no_temporaries(tmp_path)


def test_write_error_in_the_body_names_the_users_path(tmp_path):
    out = tmp_path / "x.json"
    out.write_text("old")
    with pytest.raises(OSError) as caught, atomic_path(out) as tmp:
        tmp.write_text("partial")
        raise OSError(errno.ENOSPC, f"No space left on device: '{tmp}'")
    assert caught.value.filename == str(out) and ".tmp" not in str(caught.value)
    assert caught.value.errno == errno.ENOSPC
    assert out.read_text() == "old"
    _no_temporaries(tmp_path)


def test_checkpoint_on_a_full_disk_is_an_oserror(tmp_path, monkeypatch):
    import torch

    from nctk.finetune import train

    class FullFile:
        def __init__(self, *args, **kwargs):
            self.written = 0

        def write(self, data):
            self.written += len(data)
            if self.written > 100:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return len(data)

        def flush(self):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"old checkpoint")
    monkeypatch.setattr(train, "open", FullFile, raising=False)
    with pytest.raises(OSError) as caught:
        train._save(path, {"net": torch.zeros(1000)})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert path.read_bytes() == b"old checkpoint"
    _no_temporaries(tmp_path)


def _tmpfs_available() -> bool:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c",
                            "mount -t tmpfs -o size=64k none /mnt 2>/dev/null || "
                            "mount -t tmpfs -o size=64k none /tmp"],
                           capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _tmpfs_available(), reason="needs unshare to mount a private tmpfs")
@pytest.mark.slow
def test_real_full_disk_on_a_tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs holds the old file; a 200 KB JSON cannot fit: exit 2, old file kept."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        "import json, os, sys\n"
        "from nctk.cli import main\n"
        f"open('{disk}/big.json', 'w').write('old')\n"
        "import nctk.workflow as workflow\n"
        "workflow.RankingOutcome.to_json = lambda self: {'filler': 'x' * 200000}\n"
        f"code = main(['rank', *sys.argv[1:], '--json', '{disk}/big.json'])\n"
        f"print('RESULT', code, open('{disk}/big.json').read(), sorted(os.listdir('{disk}')))\n")
    rng = np.random.default_rng(0)
    feats = []
    for name in ("a", "b"):
        feats.append(str(tmp_path / f"{name}.npz"))
        np.savez(feats[-1], features=rng.normal(size=(12, 3)), labels=np.arange(12) % 3)
    env = dict(os.environ, PYTHONPATH=str(Path(nctk.io.__file__).parents[1]))
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c",
         f'mount -t tmpfs -o size=64k none "{disk}" && exec "$0" "$@"', sys.executable,
         "-c", script, *feats], capture_output=True, text=True, env=env, check=False)
    assert "RESULT 2 old ['big.json']" in done.stdout, done.stdout + done.stderr
    assert f"{disk}/big.json: No space left on device" in done.stderr
