"""The network commands of the xbar command line: train, deploy, evaluate."""
from __future__ import annotations

import json

import pytest

from procedures.cli import main

EVAL_KEYS = {"transfers", "mean_accuracy", "std_accuracy", "frac_points_ge_95", "wall_s"}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "moons.pt"
    assert main(["train", "--dataset", "moons", "--regular", "--epochs", "300", "--lr", "0.3",
                 "--seed", "1", "--out", str(path)]) == 0
    return path


def test_train_saves_a_loadable_model(model_file, capsys):
    from models.model_io import load_model

    model, meta = load_model(model_file)
    assert meta["arch"]["sizes"] == [2, 8, 1] and meta["train"]["aware"] is False
    assert meta["metrics"]["test_accuracy"] >= 0.85


def test_train_aware_with_noise(tmp_path, capsys):
    path = tmp_path / "aware.pt"
    assert main(["train", "--dataset", "moons", "--aware", "--noise", "0.1", "--hidden", "4", "--epochs", "20",
                 "--seed", "0", "--out", str(path)]) == 0
    assert "hardware-aware moons network [4]" in capsys.readouterr().out
    from models.model_io import load_model

    model, meta = load_model(path)
    assert meta["layer_options"]["noise"] == 0.1 and meta["arch"]["layers"] == ["CrossbarLinear"] * 2


def test_deploy_on_the_simulated_chip(model_file, tmp_path, capsys):
    out = tmp_path / "deploy.json"
    assert main(["deploy", str(model_file), "--chip", "sim", "--preset", "ideal", "--seed", "2",
                 "--json", str(out), "--quiet"]) == 0
    rep = json.loads(out.read_text())
    assert rep["placement"]["chip"] == [9, 18]                    # sized to the network
    assert abs(rep["accuracy"]["chip_mvm"] - rep["accuracy"]["software"]) <= 0.01
    assert len(rep["layers"]) == 2
    text = capsys.readouterr().out
    assert "placement" in text and "chip (analog MVM)" in text


def test_evaluate_statistical_and_tuned(model_file, tmp_path):
    for mode, n in (("statistical", 300), ("tuned", 5)):
        out = tmp_path / f"{mode}.json"
        assert main(["evaluate", str(model_file), "--transfers", str(n), "--mode", mode, "--seed", "4",
                     "--json", str(out)]) == 0
        rep = json.loads(out.read_text())
        assert EVAL_KEYS <= rep.keys() and rep["transfers"] == n and rep["mode"] == mode
        assert 0 <= rep["frac_points_ge_95"] <= 1


def test_bad_input_is_reported(model_file, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.pt"), "--transfers", "10"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(model_file), "--transfers", "0"]) == 2
    assert "--transfers must be >= 1" in capsys.readouterr().err
    assert main(["deploy", str(model_file), "--size", "4x4", "--quiet"]) == 2
    assert "the chip is 4x4" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    assert main(["deploy", str(tmp_path / "junk.pt")]) == 2
    assert "not a loadable model file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--hidden", "0", "--out", str(tmp_path / "x.pt")])


def test_deploy_with_finetuning(model_file, tmp_path, capsys):
    out, tuned = tmp_path / "ft.json", tmp_path / "ft.pt"
    assert main(["deploy", str(model_file), "--seed", "3", "--finetune", "2", "--finetuned-out", str(tuned),
                 "--json", str(out), "--quiet"]) == 0
    rep = json.loads(out.read_text())
    assert len(rep["finetune"]["history"]) == 3 and tuned.is_file()
    assert "fine-tuned" in capsys.readouterr().out


def test_insitu_trains_through_pulses_on_the_asymmetric_chip(tmp_path, capsys):
    out = tmp_path / "insitu.json"
    assert main(["insitu", "--rule", "manhattan", "--epochs", "1", "--seed", "0", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["rule"] == "manhattan" and rep["preset"] == "asymmetric"
    assert sum(rep["pulses"]) > 0 and 0 <= rep["mean_test_accuracy"] <= 1
    assert "in-situ manhattan training" in capsys.readouterr().out
    assert main(["insitu", "--hidden", "0"]) == 2
