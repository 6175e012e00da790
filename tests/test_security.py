"""Security properties the package promises: checkpoints never unpickle code or make Hydra build
what our configs do not, and nothing reaches the network at run time (the whole suite runs
behind tests/network_guard); stores are read-only and API keys stay out of run folders."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest
import torch
from omegaconf import OmegaConf

from clipbert.cli.train import train
from clipbert.data.stores import LmdbStore
from clipbert.runs.configs import check_targets
from clipbert.runs.record import RECORD_KEY, checkpoint_record, load_run
from tests.helpers import REPO, compose_config, run_script

OFFLINE = "the clipbert test suite runs offline"
SOURCES = [*sorted((REPO / "clipbert").rglob("*.py")), *sorted(REPO.glob("*.py"))]


def unsafe_loads(source: str) -> list[int]:
    """Lines of ``torch.load(...)`` calls without ``weights_only=True``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        named = isinstance(func, ast.Attribute) and func.attr == "load"
        if not (named and isinstance(func.value, ast.Name) and func.value.id == "torch"):
            continue
        safe = any(
            k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords
        )
        if not safe:
            lines.append(node.lineno)
    return lines


def test_every_torch_load_in_the_package_uses_weights_only() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}"
        for path in SOURCES
        for line in unsafe_loads(path.read_text())
    ]
    assert SOURCES and not offenders, f"torch.load without weights_only=True: {offenders}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("torch.load(p)", [1]),
        ("torch.load(p, weights_only=False)", [1]),
        ("x = 1\ntorch.load(p, map_location='cpu')", [2]),
        ("torch.load(p, weights_only=True)", []),
        ("json.load(f)", []),
    ],
)
def test_the_scan_finds_unsafe_loads(source: str, expected: list[int]) -> None:
    assert unsafe_loads(source) == expected


def test_connections_beyond_this_machine_are_refused_here_and_in_subprocesses() -> None:
    with pytest.raises(ConnectionRefusedError, match=OFFLINE):
        socket.create_connection(("198.51.100.7", 443), timeout=1)
    probe = "import socket; socket.create_connection(('198.51.100.7', 443), timeout=1)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode != 0 and OFFLINE in result.stderr


def test_loopback_connections_still_work() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        with socket.create_connection(("localhost", port), timeout=5):
            pass


def _checkpoint_naming(tmp_path: Path, target: str) -> Path:
    """A checkpoint whose run record asks predict.py to build ``target``."""
    marker = tmp_path / "ran"
    config = {"task": {"module": {"_target_": target, "_args_": [f"touch {marker}"]}}}
    path = tmp_path / "stranger.ckpt"
    record = checkpoint_record(config, bert_config={}, tokenizer_files={})
    torch.save({"state_dict": {}, "hyper_parameters": {}, RECORD_KEY: record}, path)
    return path


def test_a_checkpoint_naming_a_foreign_target_is_refused_before_anything_is_built(
    tmp_path: Path,
) -> None:
    path = _checkpoint_naming(tmp_path, "os.system")
    with pytest.raises(
        ValueError, match=r"'os\.system' at 'task\.module\._target_'.*trusted_targets"
    ):
        load_run(path)
    assert not (tmp_path / "ran").exists()
    assert load_run(path, trusted_targets=["os.system"]).config["task"]["module"]


def test_every_target_our_configs_compose_is_accepted() -> None:
    for task in ("demo_video_qa", "msrvtt_ret", "vqa", "tgif_action"):
        cfg = compose_config("train", [f"task={task}", "trainer=ddp", "logger=wandb"])
        check_targets(OmegaConf.to_container(cfg, resolve=False), f"task={task}")


@pytest.mark.parametrize("entry", ["predict.py", "convert.py"])
def test_the_commands_refuse_such_a_checkpoint_with_one_line(tmp_path: Path, entry: str) -> None:
    path = _checkpoint_naming(tmp_path, "os.system")
    args = {"predict.py": [f"ckpt_path={path}"], "convert.py": [f"src={path}", "dst=x.ckpt"]}
    result = run_script(entry, *args[entry], f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 1
    assert "'os.system' at 'task.module._target_'" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ran").exists()


def test_stores_are_opened_read_only(demo_root: Path) -> None:
    vis_db = next(demo_root.glob("vis_db/*/data.mdb")).parent
    before = {p.name: p.stat().st_mtime_ns for p in vis_db.iterdir()}
    store = LmdbStore(vis_db)
    assert store.get(store.keys()[0])
    env = store._env()
    assert env.flags()["readonly"]
    with pytest.raises(lmdb.ReadonlyError):
        env.begin(write=True)
    assert {p.name: p.stat().st_mtime_ns for p in vis_db.iterdir()} == before


def test_a_wandb_api_key_is_never_written_to_the_run(
    train_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "clipbert-test-key-0123456789abcdef01234567"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    cfg = train_config("logger=[csv,wandb]", "trainer.log_every_n_steps=1", "test=false")
    train(cfg)
    files = [p for p in Path(cfg.paths.output_dir).rglob("*") if p.is_file()]
    assert any(p.suffix == ".ckpt" for p in files) and any(p.suffix == ".wandb" for p in files)
    leaked = [str(p) for p in files if secret.encode() in p.read_bytes()]
    assert not leaked, f"the API key was written to {leaked}"
