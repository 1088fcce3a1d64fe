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
    assert meta["arch"]["scales"] == "output" == model.scales        # the default


def test_train_with_layer_scales_and_more_transfers(tmp_path, capsys):
    path = tmp_path / "layer.pt"
    assert main(["train", "--dataset", "moons", "--regular", "--noise", "0.07", "--transfers", "4", "--scales", "layer",
                 "--hidden", "3", "--epochs", "10", "--weight-decay", "3e-4", "--seed", "0", "--out", str(path)]) == 0
    assert "scales per layer" in capsys.readouterr().out
    from models.model_io import load_model

    model, meta = load_model(path)
    assert model.scales == "layer" and meta["train"]["transfers"] == 4 and model.layers[0].transfers == 4
    assert meta["train"]["weight_decay"] == 3e-4
    with pytest.raises(SystemExit):
        main(["train", "--scales", "column", "--out", str(tmp_path / "x.pt")])
    assert main(["train", "--weight-decay", "-1", "--out", str(tmp_path / "x.pt")]) == 2
    assert "weight_decay must be >= 0, got -1.0" in capsys.readouterr().err


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
    err = capsys.readouterr().err
    assert "is not an xbarlab model file" in err and len(err.strip().splitlines()) == 1
    from fractions import Fraction

    import torch

    torch.save({"x": Fraction(1, 3)}, tmp_path / "pickled.pt")          # a pickled object, not tensors
    assert main(["deploy", str(tmp_path / "pickled.pt")]) == 2
    err = capsys.readouterr().err
    assert "pickled Python objects, which xbarlab never loads" in err and "weights_only" not in err
    with pytest.raises(SystemExit):
        main(["train", "--hidden", "0", "--out", str(tmp_path / "x.pt")])


def test_deploy_with_finetuning(model_file, tmp_path, capsys):
    out, run = tmp_path / "ft.json", tmp_path / "run"
    tuned = run / "finetuned.pt"
    assert main(["deploy", str(model_file), "--seed", "3", "--finetune", "2", "--out", str(run),
                 "--json", str(out), "--quiet", "--no-plots"]) == 0
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


def test_fit_variability_writes_a_model_that_train_and_evaluate_take(model_file, tmp_path, capsys):
    from models.model_io import load_model
    from models.variability import VariabilityModel
    from procedures.ops.chips import open_chip
    from procedures.cli import build_parser
    from procedures.cli.models import cmd_fit_variability

    out, report = tmp_path / "fit" / "variability.json", tmp_path / "fit_report.json"
    args = build_parser().parse_args(["fit-variability", "--chip", "sim", "--size", "16x16", "--seed", "2",
                                      "--out", str(out), "--json", str(report), "--quiet"])
    assert args.func is cmd_fit_variability
    assert cmd_fit_variability(args, open_chip) == 0
    text = capsys.readouterr().out
    assert "sigma_rel(G)" in text and "µS" in text and f"written to {out}" in text
    fitted = VariabilityModel.from_dict(json.loads(out.read_text()))
    rep = json.loads(report.read_text())
    assert fitted.name == "fitted" and rep["model"] == fitted.to_dict()
    assert fitted.stuck_frac == pytest.approx(rep["tuning"]["stuck_flagged"] / rep["tuning"]["cells"])
    # --variability takes the file as well as a preset
    ev = tmp_path / "ev.json"
    assert main(["evaluate", str(model_file), "--transfers", "50", "--variability", str(out), "--seed", "1",
                 "--json", str(ev)]) == 0
    assert json.loads(ev.read_text())["variability"] == str(out)
    net = tmp_path / "aware.pt"
    assert main(["train", "--aware", "--hidden", "4", "--epochs", "3", "--variability", str(out),
                 "--out", str(net)]) == 0
    _, meta = load_model(net)
    assert meta["layer_options"]["variability"] == fitted.to_dict()
    capsys.readouterr()
    for bad, why in ((tmp_path / "missing.json", "neither a preset"), ("nope", "unknown variability model")):
        assert main(["evaluate", str(model_file), "--transfers", "5", "--variability", str(bad)]) == 2
        assert why in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert main(["train", "--epochs", "1", "--variability", str(tmp_path / "junk.json"),
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "must hold a JSON object" in capsys.readouterr().err


def test_train_and_evaluate_on_the_paper_data_under_the_published_transfer_model(model_file, tmp_path, capsys):
    path = tmp_path / "paper.pt"
    assert main(["train", "--dataset", "moons-paper", "--variability", "drolet2023", "--epochs", "5",
                 "--transfers", "4", "--tail", "0.25", "--replicas", "4", "--robust-epochs", "2", "--seed", "2",
                 "--finish-variability", "drolet2023", "--finish-epochs", "2", "--finish-transfers", "3",
                 "--out", str(path)]) == 0
    from models.model_io import load_model

    _, meta = load_model(path)
    assert meta["train"]["dataset"] == "moons-paper" and meta["layer_options"]["variability"]["name"] == "drolet2023"
    assert meta["train"]["tail"] == 0.25 and meta["train"]["replicas"] == 4 and meta["train"]["robust_epochs"] == 2
    assert (meta["train"]["finish_variability"], meta["train"]["finish_epochs"], meta["train"]["finish_transfers"]) \
        == ("drolet2023", 2, 3)
    bad = tmp_path / "bad.pt"
    assert main(["train", "--dataset", "moons-paper", "--epochs", "1", "--finish-epochs", "3", "--out", str(bad)]) == 2
    assert "finish_variability and finish_epochs" in capsys.readouterr().err and not bad.exists()
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(path), "--transfers", "100", "--variability", "drolet2023", "--seed", "1",
                 "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["mode"] == "drolet2023" and rep["dataset"] == "moons-paper" and rep["variability"] == "drolet2023"
    assert "moons-paper / drolet2023" in capsys.readouterr().out
    # the evaluator and the dataset are named in every report, whatever the model
    assert main(["evaluate", str(model_file), "--transfers", "50", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["dataset"] == "moons"


def test_fit_variability_follows_the_drift_measurement_protocol(tmp_path, capsys):
    from procedures.cli import build_parser

    args = build_parser().parse_args(["fit-variability", "--chip", "sim", "--size", "8x8", "--chips", "4",
                                      "--order", "column", "--parallel", "1", "--passes", "1", "--drift-count",
                                      "all", "--reset-each", "--out", str(tmp_path / "v.json"),
                                      "--json", str(tmp_path / "r.json"), "--quiet"])
    assert args.parallel == 1 and args.reset_each
    assert main(["fit-variability", "--chip", "sim", "--size", "8x8", "--chips", "4", "--order", "column",
                 "--parallel", "1", "--passes", "1", "--drift-count", "all", "--reset-each",
                 "--out", str(tmp_path / "v.json"), "--json", str(tmp_path / "r.json"), "--quiet"]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["model"]["drift_count"] == "all" and rep["tuning"]["passes_run"] == 1
    # k reaches the far end of an 8x8 array: every later cell counts
    assert max(row["k"] for row in rep["figures"]["drift"]["table"]) >= 40


def test_train_records_the_xbarlab_pipeline_recipe_options_and_refuses_bad_ones(tmp_path, capsys):
    from models.model_io import load_model

    path = tmp_path / "r.pt"
    assert main(["train", "--hidden", "4", "--epochs", "5", "--transfers", "2", "--robust-epochs", "2",
                 "--robust-share", "0.97", "--placed-drift", "--restarts", "2", "--seed", "3", "--out", str(path)]) == 0
    assert "kept restart" in capsys.readouterr().out
    _, meta = load_model(path)
    t, sel = meta["train"], meta["metrics"]["selection"]
    assert (t["robust_share"], t["placed_drift"], t["restarts"], t["seed"]) == (0.97, True, 2, 3)
    assert len(sel["training_shares"]) == 2 and sel["seed"] in (3, 1003) and sel["judge"] == "tio2-3it"
    bad = tmp_path / "bad.pt"
    assert main(["train", "--regular", "--epochs", "1", "--placed-drift", "--out", str(bad)]) == 2
    assert "placed_drift needs aware training" in capsys.readouterr().err and not bad.exists()
