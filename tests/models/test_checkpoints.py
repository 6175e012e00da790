"""Reading checkpoints safely and loading them with a report of every key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from clipbert.models.checkpoints import (
    load_weights,
    read_state_dict,
    rename_layer_norm,
)


class Payload:
    """Stands for arbitrary pickled code in a hostile checkpoint."""


def small() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))


def test_reads_flat_and_wrapped_state_dicts(tmp_path: Path) -> None:
    sd = small().state_dict()
    torch.save(sd, tmp_path / "flat.pt")
    torch.save({"model": sd, "iteration": 7}, tmp_path / "d2.pth")
    restore = {"global_step": 9, "model_state_dict": sd, "optim_state_dict": {"state": {}}}
    torch.save(restore, tmp_path / "restore.pt")  # the original's resume file
    save_file(sd, str(tmp_path / "w.safetensors"))
    for name in ("flat.pt", "d2.pth", "restore.pt", "w.safetensors"):
        loaded = read_state_dict(tmp_path / name)
        assert loaded.keys() == sd.keys()
        assert all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_refuses_pickled_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "obj": Payload()}, path)
    with pytest.raises(ValueError, match="refused"):
        read_state_dict(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        read_state_dict(tmp_path / "nope.pt")


def test_gamma_beta_become_weight_bias() -> None:
    renamed = rename_layer_norm(
        {"a.LayerNorm.gamma": torch.ones(1), "a.LayerNorm.beta": torch.zeros(1)}
    )
    assert set(renamed) == {"a.LayerNorm.weight", "a.LayerNorm.bias"}


def test_shape_filtered_load_reports_every_key() -> None:
    target = small()
    source = small().state_dict()
    source["2.weight"] = torch.zeros(5, 4)  # a head of another width, as when finetuning
    source["extra.weight"] = torch.zeros(1)
    del source["1.bias"]
    before = target.state_dict()["2.weight"].clone()
    report = load_weights(target, source)
    assert report.mismatched == [("2.weight", (5, 4), (2, 4))]
    assert report.unexpected == ["extra.weight"]
    assert report.missing == ["1.bias"]
    assert set(report.loaded) == {"0.weight", "0.bias", "1.weight", "2.bias"}
    assert torch.equal(target.state_dict()["2.weight"], before)  # skipped, not half-loaded
    assert torch.equal(target.state_dict()["0.weight"], source["0.weight"])
    assert "shape-mismatched 1" in report.summary()


def test_strict_load_names_the_problem() -> None:
    source = small().state_dict()
    source["2.weight"] = torch.zeros(5, 4)
    with pytest.raises(ValueError, match="2.weight"):
        load_weights(small(), source, strict=True)
    assert not load_weights(small(), small().state_dict(), strict=True).missing
