"""Deploy model and inference on chip: the network procedures.

``xbar deploy MODEL.pt``: map → place → tune → compensate stuck devices → read back → accuracy
(:func:`models.deploy.deploy`), journaled like a tune so ``--resume RUN_DIR`` continues an
interrupted deployment.  The model is copied into the run folder (``model.pt``), so a resume or a
later inference never depends on the original file.

``xbar infer MODEL.pt --chip-from DEPLOY_RUN``: the test set through the chip's analog
matrix-vector products, one row per test point (on the simulated chip ``--chip-from`` names the
deployment whose chip state to use; on a bench the deployed chip is the physical one).
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
from pymeasure.experiment import BooleanParameter, FloatParameter, IntegerParameter, ListParameter, Parameter

from programming.schedule import ORDERS

from .base import XbarProcedure
from .calibrate_lines import LineEstimateMixin
from .chips import load_station, parse_size
from ..storage.journal import TUNE_COLUMNS
from ..storage.run_data import REPORT_JSON, read_json
from .pulse_schedule import PulseScheduleMixin
from .tune_array import TuneLogMixin

MODEL_PT = "model.pt"


class _ModelMixin:
    """A saved model (``model`` path) checked before anything is sourced."""

    def model_path(self) -> Path:
        own = self.run_dir / MODEL_PT if self.run_dir is not None else None
        if self.resuming and own is not None and own.is_file():
            return own
        return Path(self.model)

    def load(self):
        from models.datasets import dataset_of
        from models.model_io import load_model

        path = self.model_path()
        if not str(self.model):
            raise ValueError("a model file is needed: xbar %s MODEL.pt" % self.NAME)
        if not path.is_file():
            raise ValueError(f"model file {path} does not exist")
        model, meta = load_model(path)
        return model, meta, dataset_of(meta)

    @property
    def array_size(self) -> tuple[int, int]:
        if str(self.size).strip():
            return parse_size(self.size)
        from models.deploy import network_extent
        return network_extent(self.load()[0])


class DeployProcedure(PulseScheduleMixin, LineEstimateMixin, _ModelMixin, TuneLogMixin, XbarProcedure):
    """Program a trained network onto the chip, read it back and measure its accuracy."""

    NAME = "deploy"
    RESUMABLE = True
    STAGES = ("main", "compensation", "predistortion", "predistortion_2")
    DATA_COLUMNS = TUNE_COLUMNS

    model = Parameter("Model file", default="")
    tolerance = FloatParameter("Tolerance", minimum=1e-4, maximum=0.49, default=0.01)
    passes = IntegerParameter("Passes", minimum=1, maximum=20, default=3)
    order = ListParameter("Order", choices=list(ORDERS), default="row")
    no_compensate = BooleanParameter("No stuck compensation", default=False)
    points = IntegerParameter("Test points for accuracy (0 = all)", minimum=0, default=0)
    finetune = IntegerParameter("Fine-tuning rounds", minimum=0, maximum=1000, default=0)
    on_instrument = BooleanParameter("Write-verify loop on the instrument (2600B script)", default=False)
    no_predistort = BooleanParameter("No pre-distortion of the targets for the product's IR drop", default=False)

    def check(self) -> None:
        if not str(self.size).strip():
            self.size = "{}x{}".format(*self.array_size) if self.chip == "sim" else ""
        super().check()
        self.load()
        self.config()
        self.line_estimate_ohm()                          # a bad --line-estimate is refused here
        if self.on_instrument and self.chip != "station":
            raise ValueError("--on-instrument runs the write-verify loop on a bench's 2600B: it needs --station")

        if self.on_instrument:
            from programming.tuner import on_instrument_scheme

            scheme = on_instrument_scheme(self.config().tuner().write_scheme)
            problem = load_station(self.station).on_instrument_problem(scheme)
            if problem:
                raise ValueError(problem)

    def config(self, limits=None):
        from models.deploy import DeployConfig
        from programming.tuner import TunerConfig
        return DeployConfig(tolerance=float(self.tolerance), compensate=not self.no_compensate,
                            order=self.order, passes=int(self.passes), seed=int(self.seed),
                            pulses=self.pulse_config(TunerConfig(write_compensation=not self.on_instrument), limits),
                            on_instrument=bool(self.on_instrument))   # (the script writes uncompensated)

    def check_limits(self, limits) -> None:
        self.config(limits).tuner().check_limits(limits)

    def run(self) -> None:
        from models.deploy import alignment, deploy, deployment_targets

        model, meta, data = self.load()
        if int(self.points):
            data = replace(data, x_test=data.x_test[: int(self.points)], y_test=data.y_test[: int(self.points)])
        if not self.resuming:
            shutil.copyfile(self.model_path(), self.run_dir / MODEL_PT)
        cfg = self.config(self.xb.limits)
        r_line = self.measured_line_estimate(self.xb)     # auto: measured now, reads only
        cfg = replace(cfg, pulses=self.scheduled(cfg.pulses), line_resistance=r_line,
                      access_resistance=float(self.access_estimate), predistort=not self.no_predistort,
                      device_beta=float(getattr(self, "device_beta_used", 0.0)))
        self.tgt = np.broadcast_to(deployment_targets(model, self.xb, align=alignment(cfg))[2],
                                   (self.xb.n_chips, *self.xb.shape)).copy()
        log = self.tune_log()
        try:
            self.dep = deploy(model, self.xb, data, cfg, progress=lambda d, t, s: self.count(d, t, stage=s), log=log)
        finally:
            log.flush()                     # also on Ctrl-C or an instrument error: keep what finished
        self.final = self.dep.result.final
        self.dep.report.update(line_estimate_ohm=r_line)
        if int(self.finetune):
            from models.finetune import FinetuneConfig, finetune_on_chip
            from models.model_io import save_model

            tuned, ft = finetune_on_chip(self.dep, self.xb, data, FinetuneConfig(rounds=int(self.finetune),
                                                                                   seed=int(self.seed)), cfg)
            self.dep.report["finetune"] = ft
            save_model(self.run_dir / "finetuned.pt", tuned, meta.get("train"))

    def finalize(self) -> None:
        tgt = getattr(self, "tgt", None)
        if tgt is None:
            return
        dep = getattr(self, "dep", None)
        self.journal_maps(tgt, None if dep is None else dep.result.final)
        if dep is not None:
            self.maps.update(status=dep.result.status, targets=dep.result.targets, after=dep.conductances)
            self.report = {"model": str(self.model), **dep.report}
            if getattr(self, "schedule_report", None):
                self.report["schedule"] = self.schedule_report
        else:
            st = self.maps.get("status")
            self.report = {"model": str(self.model), "cells": int((~np.isnan(tgt)).sum()),
                           "cells_finished": int((st != 0).sum()) if st is not None else 0}


class InferenceProcedure(_ModelMixin, XbarProcedure):
    """Classify the test set through the chip's analog matrix-vector products."""

    NAME = "infer"
    DATA_COLUMNS = ["Index", "Label", "Prediction", "Correct"]

    model = Parameter("Model file", default="")
    points = IntegerParameter("Test points (0 = all)", minimum=0, default=0)

    def check(self) -> None:
        if not str(self.size).strip():
            self.size = "{}x{}".format(*self.array_size) if self.chip == "sim" else ""
        super().check()
        self.load()
        if self.chip == "sim" and not self.chip_from:
            raise ValueError("inference on the simulated chip needs --chip-from DEPLOY_RUN (the run folder "
                             "of the deployment whose chip to use)")

    def deployed_report(self) -> dict:
        """The ``chip_from`` deployment's report ({} if there is none)."""
        path = Path(self.chip_from) / REPORT_JSON if self.chip_from else None
        return (read_json(path) or {}) if path is not None and path.is_file() else {}

    def deployed_window(self) -> tuple[float, float] | None:
        """The window (S) the ``chip_from`` deployment mapped the weights onto (a pre-distorted
        deployment leaves headroom below the window's top), or None for the chip's own."""
        window = (self.deployed_report().get("predistortion") or {}).get("mapping_window_uS")
        return None if window is None else (1e-6 * float(window[0]), 1e-6 * float(window[1]))

    def run(self) -> None:
        import torch

        from models.deploy import Deployment, chip_forward, deployment_targets, per_point_correct
        from models.placement import Placement
        from models.datasets import predictions

        model, meta, data = self.load()
        mapped, placement, _ = deployment_targets(model, self.xb, self.deployed_window())
        if self.deployed_report().get("placement"):      # where the deployment put the blocks
            placement = Placement.from_dict(self.deployed_report()["placement"])
        dep = Deployment(model, mapped, placement, None, None, None, 0.0)
        n = int(self.points) or int(data.y_test.shape[0])
        x, y = data.x_test[:n], data.y_test[:n]
        sub = replace(data, x_test=x, y_test=y)
        self.stop_point()
        out = chip_forward(self.xb, dep, x)                              # (n_chips, n, out)
        correct = per_point_correct(out, sub)                            # (n_chips, n)
        pred = predictions(torch.as_tensor(np.asarray(out[0], np.float32)), data.n_classes).numpy()
        for i in range(n):
            self.emit("results", {"Index": i, "Label": int(y[i]), "Prediction": int(pred[i]),
                                  "Correct": int(correct[0, i])})
        self.count(n, n, "point")
        with torch.no_grad():
            software = per_point_correct(model.eval()(x)[None], sub)[0].mean()
        self.report = {"model": str(self.model), "test_points": n, "accuracy": float(correct[0].mean()),
                       "accuracy_per_chip": [float(a) for a in correct.mean(axis=1)[:100]],
                       "software_accuracy": float(software)}
