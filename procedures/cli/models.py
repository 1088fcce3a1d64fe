"""The network commands of ``xbar``: train, evaluate, fit-variability, insitu (``xbar deploy`` and
``xbar infer`` are operator procedures: procedures.py; ``xbar deploy --finetune ROUNDS`` fine-tunes
with the chip in the loop and saves the model as RUN_DIR/finetuned.pt).

    xbar train --dataset moons [--hidden 8] (--aware | --regular) [--scales output|layer] [--noise 0.07]
               [--transfers T] [--weight-decay WD] --seed S --out MODEL.pt
    xbar evaluate MODEL.pt --transfers N [--mode statistical | tuned] --seed S --json REPORT.json
    xbar insitu --rule sgd|manhattan|tiki-taka|shd [--preset asymmetric | --station STATION.toml] [--epochs N]
                --seed S --json R.json
    xbar fit-variability --chip sim [--preset P] --size 16x16 --seed S --out VARIABILITY.json
                                               (train/evaluate --variability take a preset or such a file)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.names import DATASETS, DRIFT_COUNTS, LR_SCHEDULES, SCALES, TRANSFER_MODEL_NAMES, VARIABILITY_PRESET_NAMES
from programming.schedule import ORDERS

from .options import add_chip_options, add_json_option, add_quiet_option
from .registry import command


def _open_chip(*args, **kwargs):
    """:func:`procedures.ops.chips.open_chip` (the simulator is imported when a chip is opened)."""
    from ..ops.chips import open_chip

    return open_chip(*args, **kwargs)

#: help of --variability (train, evaluate)
VARIABILITY_HELP = (f"variability model: a preset ({', '.join(sorted(VARIABILITY_PRESET_NAMES))}), "
                    f"{', '.join(TRANSFER_MODEL_NAMES)} (Drolet et al. 2023's published transfer simulation) "
                    "or a VARIABILITY.json written by xbar fit-variability")


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden takes sizes like 8 or 32,16, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--hidden sizes must be >= 1, got {text!r}")
    return sizes


def _write_json(path: Path | None, report: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {path}")


def _train_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("--dataset", choices=DATASETS, default="moons",
                   help="moons (noise 0.05), moons-paper (Drolet et al. 2023's data, noise 0.2, 172 of its 200 "
                        "test points also in training), moons-paper-clean (same test points, no leak) or digits")
    t.add_argument("--hidden", type=_hidden, default=None, help="hidden layer sizes, e.g. 8 or 32,16")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--aware", dest="aware", action="store_true", default=True,
                      help="hardware-aware training (default)")
    mode.add_argument("--regular", dest="aware", action="store_false", help="regular training")
    t.add_argument("--scales", choices=SCALES, default="output",
                   help="weights onto conductances: one scale per output column pair (default) or per layer")
    t.add_argument("--noise", type=float, default=0.0, help="multiplicative conductance noise injected in training")
    t.add_argument("--transfers", type=int, default=None,
                   help="transfers (or noise draws) sampled per training step (default 8)")
    t.add_argument("--variability", default="tio2-3it", metavar="PRESET|FILE.json",
                   help=VARIABILITY_HELP + " (sampled by aware training)")
    t.add_argument("--epochs", type=int, default=None, help="training epochs (default: the dataset's)")
    t.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the dataset's)")
    t.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=None,
                   help="learning rate over the epochs (default: the dataset's; moons: cosine)")
    t.add_argument("--weight-decay", type=float, default=None, help="Adam weight decay (default: the dataset's)")
    t.add_argument("--kl", type=float, default=0.0, help="weight of the variational KL regularizer")
    t.add_argument("--tail", type=float, default=1.0, metavar="SHARE",
                   help="each example's loss averages its worst SHARE of the sampled transfers (1 = all)")
    t.add_argument("--replicas", type=int, default=1, metavar="N",
                   help="train ceil(hidden/N) units regularly, then copy each N times (one hidden layer; 1 = off)")
    t.add_argument("--robust-epochs", type=int, default=0, metavar="N",
                   help="then N epochs of fine-tuning on the share of points correct in >= 95 %% of --transfers "
                        "transfers of --variability (drolet2023: plus every single stuck device enumerated); "
                        "aware, one output; 0 = off")
    t.add_argument("--finish-variability", default="", metavar="drolet2023|PRESET",
                   help="then a second such fine-tuning judged by this transfer model (drolet2023, or the "
                        "network's own --variability), e.g. trained against tio2-3it, finished against drolet2023")
    t.add_argument("--finish-epochs", type=int, default=0, metavar="N", help="epochs of that second fine-tuning")
    t.add_argument("--finish-transfers", type=int, default=16, metavar="T",
                   help="transfers per step of that second fine-tuning (default 16)")
    t.add_argument("--robust-share", type=float, default=0.95, metavar="SHARE",
                   help="the robust-share fine-tunings count a training point when correct in >= SHARE of the "
                        "transfers (default 0.95, the evaluator's; higher aims at a margin)")
    t.add_argument("--placed-drift", action="store_true",
                   help="aware training counts drift as the deployment places the layers (the smallest array "
                        "holding them, every cell of it counted), not each layer's block alone")
    t.add_argument("--restarts", type=int, default=1, metavar="N",
                   help="train N networks (restart r seeded SEED + 1000 r) and keep the one with the highest "
                        "share of TRAINING points correct in >= 95 %% of 1000 transfers of the last stage's "
                        "model (aware; 1 = off)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, required=True, metavar="MODEL.pt")
    add_json_option(t, "also write the report (the configuration and the accuracies) here")


def _evaluate_args(e: argparse.ArgumentParser) -> None:
    e.add_argument("model", type=Path, metavar="MODEL.pt")
    e.add_argument("--transfers", type=int, default=1000)
    e.add_argument("--mode", choices=("statistical", "tuned"), default="statistical")
    e.add_argument("--variability", default="tio2-3it", metavar="PRESET|FILE.json",
                   help=VARIABILITY_HELP + " (statistical mode)")
    e.add_argument("--preset", default="tio2-3it", help="simulated chip preset (tuned mode)")
    e.add_argument("--tolerance", type=float, default=0.01, help="write-verify tolerance (tuned mode)")
    e.add_argument("--no-compensate", action="store_true", help="no stuck-device compensation")
    e.add_argument("--line-estimate", default="auto", metavar="auto|OHM",
                   help="line resistance per segment for the tuner's IR-drop correction (tuned mode): "
                        "auto = measured on each chip with reads (xbar calibrate-lines), 0 = none")
    e.add_argument("--no-predistort", action="store_true",
                   help="do not pre-distort the targets for the product's IR drop (tuned mode; by default the "
                        "accuracy is measured without, then with pre-distortion)")
    e.add_argument("--seed", type=int, default=0)
    add_quiet_option(e, "no progress bar (tuned mode)")
    add_json_option(e)


def _fit_variability_args(f: argparse.ArgumentParser) -> None:
    add_chip_options(f, "16x16")
    f.add_argument("--targets", default="random", help="'random' (uniform in the window) or FILE.npy (S)")
    f.add_argument("--tolerance", type=float, default=0.01, help="write-verify tolerance (0.01 = 1 %%)")
    f.add_argument("--passes", type=int, default=3, help="tuning passes incl. re-verify passes")
    f.add_argument("--order", choices=ORDERS, default="row", help="cell order")
    f.add_argument("--parallel", type=int, default=None,
                   help="cells tuned at once per chip (default: the tuner's; 1 = cell by cell, as the 3IT "
                        "drift measurement)")
    f.add_argument("--reset-each", action="store_true",
                   help="each cell's initial RESET just before it is tuned (the 3IT drift measurement's "
                        "protocol) instead of one sweep of the array first")
    f.add_argument("--base", default="tio2-3it", metavar="PRESET|FILE.json",
                   help="model supplying the window, the k clamp and every figure with too few samples")
    f.add_argument("--drift-count", choices=DRIFT_COUNTS, default=None,
                   help="cells counted in k: same row/column ('line') or all (default: the base model's)")
    f.add_argument("--out", type=Path, required=True, metavar="VARIABILITY.json",
                   help="write the fitted model here (for train/evaluate --variability)")
    add_json_option(f, "also write the fit report (binned figures, sample counts, fallbacks)")
    add_quiet_option(f)


def _insitu_args(i: argparse.ArgumentParser) -> None:
    from models.insitu import RULES, InSituConfig

    d = InSituConfig()
    i.add_argument("--rule", choices=RULES, default="shd", help="update rule")
    i.add_argument("--dataset", choices=DATASETS, default="moons")
    i.add_argument("--hidden", type=int, default=8)
    add_chip_options(i, None)   # --size: the simulated chip's (default: what the network needs)
    i.set_defaults(preset="asymmetric")
    i.add_argument("--epochs", type=int, default=d.epochs)
    i.add_argument("--batch-size", type=int, default=d.batch_size)
    i.add_argument("--lr", type=float, default=None, help="η, weight units per unit of gradient (default: the rule's)")
    i.add_argument("--amplitude", type=float, default=d.amplitude, metavar="V",
                   help="the write pulse, V (SET +, RESET −; half-selected devices see half of it)")
    i.add_argument("--width", type=float, default=None, metavar="S",
                   help=f"the write pulse width, s (default {d.width:g}, or on a station the shortest its write "
                        f"instrument gives if longer: 1e-4 on a 2600B, 5e-5 on a B2900)")
    i.add_argument("--tile", type=int, default=d.tile, help="tile size of the layout (0: one tile per array)")
    i.add_argument("--center-cycles", type=int, default=d.center_cycles,
                   help="coarse SET/RESET cycles that bring the devices to their symmetry points")
    i.add_argument("--center-fine-cycles", type=int, default=d.center_fine_cycles,
                   help="centring cycles with the training pulse")
    i.add_argument("--train-points", type=int, default=0, metavar="N", help="first N training points (0 = all)")
    i.add_argument("--test-points", type=int, default=0, metavar="N", help="first N test points (0 = all)")
    add_quiet_option(i, "no line per epoch")
    add_json_option(i)


@command("train", help="train a network (regular or hardware-aware) and save it", arguments=_train_args)
def cmd_train(args) -> int:
    from models.model_io import save_model
    from models.train import TrainConfig, train

    kw = dict(dataset=args.dataset, hidden=args.hidden, aware=args.aware, scales=args.scales, noise=args.noise,
              variability=args.variability, kl_weight=args.kl, tail=args.tail, seed=args.seed,
              replicas=args.replicas, robust_epochs=args.robust_epochs, finish_variability=args.finish_variability,
              finish_epochs=args.finish_epochs, finish_transfers=args.finish_transfers,
              robust_share=args.robust_share, placed_drift=args.placed_drift, restarts=args.restarts)
    for key in ("transfers", "epochs", "lr", "lr_schedule", "weight_decay"):   # None: the dataset's default
        if getattr(args, key) is not None:
            kw[key] = getattr(args, key)
    cfg = TrainConfig.for_dataset(**kw)
    kind = "hardware-aware" if cfg.aware else "regular"
    print(f"training {kind} {cfg.dataset} network {[*cfg.hidden]} hidden, scales per {cfg.scales}, "
          f"noise {cfg.noise:g}, seed {cfg.seed} ...",
          flush=True)
    r = train(cfg)
    metrics = {"train_accuracy": r.train_accuracy, "test_accuracy": r.test_accuracy, "wall_s": r.wall_s}
    if r.selection:
        metrics["selection"] = r.selection
        print(f"  kept restart {r.selection['restart']} (seed {r.selection['seed']}): training points >= 95 %: "
              + ", ".join(f"{100 * v:.1f} %" for v in r.selection["training_shares"]))
    path = save_model(args.out, r.model, cfg.to_dict(), metrics)
    print(f"  train accuracy {100 * r.train_accuracy:.2f} %, test accuracy {100 * r.test_accuracy:.2f} %, "
          f"{r.wall_s:.1f} s\nmodel written to {path}")
    _write_json(args.json, {"model": str(path), **cfg.to_dict(), **metrics})
    return 0


@command("evaluate", help="Monte Carlo robustness of a network over many transfers", arguments=_evaluate_args)
def cmd_evaluate(args, open_chip=_open_chip) -> int:
    from models.deploy import DeployConfig, network_extent
    from models.evaluate import evaluate_statistical, evaluate_tuned
    from models.datasets import dataset_of
    from models.model_io import load_model
    from models.variability import get_variability

    from ..ops.calibrate_lines import parse_line_estimate

    r_line = parse_line_estimate(args.line_estimate)         # a bad value is refused before anything runs
    model, meta = load_model(args.model)
    data = dataset_of(meta)
    variability = get_variability(args.variability)
    if args.transfers < 1:
        raise ValueError(f"--transfers must be >= 1, got {args.transfers}")
    extra = {}
    if args.mode == "statistical":
        stats = evaluate_statistical(model, data, variability, args.transfers, args.seed,
                                     compensate=not args.no_compensate)
        extra["variability"] = args.variability
    else:
        from models.deploy import with_line_estimate

        size = network_extent(model)
        with open_chip("sim", size, args.preset, args.seed, args.transfers) as chips:
            cfg = DeployConfig(tolerance=args.tolerance, compensate=not args.no_compensate, seed=args.seed,
                               line_resistance=r_line or 0.0, predistort=not args.no_predistort)
            if r_line is None:
                cfg = with_line_estimate(cfg, chips)
                r_line = cfg.line_resistance
            stats, dep_report = evaluate_tuned(model, data, chips, cfg, progress=not args.quiet)
        extra.update(preset=args.preset, tuning=dep_report["tuning"], line_estimate_ohm=r_line,
                     predistortion=dep_report["predistortion"])
        if "without_predistortion" in dep_report:
            extra["without_predistortion"] = dep_report["without_predistortion"]
    rep = {"model": str(args.model), "dataset": data.name, "seed": args.seed, **stats.report(), **extra,
           "software_accuracy": float((meta.get("metrics") or {}).get("test_accuracy", float("nan")))}
    print(format_evaluate(rep))
    _write_json(args.json, rep)
    return 0


@command("fit-variability", help="tune targets with the trace on and fit the variability model "
                                "(tuning spread, neighbour drift, stuck devices) to the records",
         arguments=_fit_variability_args)
def cmd_fit_variability(args, open_chip=_open_chip) -> int:
    """Tune (random) targets with the trace on, fit the variability model, write it as JSON."""
    from models.variability import get_variability
    from models.variability_fit import fit_variability
    from programming.tuner import TunerConfig, tune

    from ..ops.chips import make_targets

    base = get_variability(args.base)
    cfg = TunerConfig(tolerance=args.tolerance, passes=args.passes, order=args.order, seed=args.seed,
                      parallel=args.parallel, reset_sweep=not args.reset_each)
    chip = f"station {args.station}" if args.station else \
        f"{args.chip} ({args.preset}, {args.size[0]}x{args.size[1]}, {args.chips} chip(s), seed {args.seed})"
    print(f"tuning on {chip} with the trace on ...", flush=True)
    with open_chip(args.chip, args.size, args.preset, args.seed, args.chips, args.line_resistance, args.station) as xb:
        targets = make_targets(args.targets, xb, args.seed, block=args.size)
        result = tune(xb, targets, cfg, progress=not args.quiet, record_trace=True)
        tuning = result.summary(xb)
    fit = fit_variability(result, base, drift_count=args.drift_count)
    print(fit.format())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fit.model.to_dict(), indent=2) + "\n")
    print(f"variability model written to {args.out}")
    _write_json(args.json, {"chip": chip, "preset": None if args.station else args.preset,
                            "size": list(args.size), "seed": args.seed, **fit.to_dict(), "tuning": tuning})
    return 0


def _insitu_limits(cfg, limits, where: str, file_limits=None) -> None:
    """:func:`~models.insitu_arrays.check_pulse_settings` before the chip is opened;
    ``file_limits``: a station file's own, when the drive instrument narrows its widths."""
    from models.insitu_arrays import check_pulse_settings

    try:
        check_pulse_settings(limits, v_in=cfg.v_in, amplitude=cfg.amplitude, width=cfg.width, where=where)
    except ValueError as exc:
        narrowed = file_limits is not None and "pulse width" in str(exc) and \
            (file_limits.width_min, file_limits.width_max) != (limits.width_min, limits.width_max)
        raise ValueError(str(exc) + (" (what its drive instrument sources; e.g. --width 1e-6 with --amplitude 1.3)"
                                     if narrowed else "")) from None


@command("insitu", help="train a network in situ: weights on the chip, changed only by pulses",
         arguments=_insitu_args)
def cmd_insitu(args, open_chip=_open_chip) -> int:
    """Train in situ on the simulated chip (``--preset``, sized to the network unless ``--size``)
    or on a station (the network's arrays in the top-left corner of the station's array).  Every
    setting, the chip size and the pulse limits (the preset's, or the station's narrowed to what
    its drive instrument sources) are checked before the chip is opened."""
    from dataclasses import replace

    from models.datasets import load_dataset
    from models.insitu import InSituConfig, chip_shape_for, train_in_situ

    if args.hidden < 1:
        raise ValueError(f"--hidden must be >= 1, got {args.hidden}")
    for name in ("train_points", "test_points"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0 (0 = all), got {getattr(args, name)}")
    if args.tile < 0:
        raise ValueError(f"--tile must be >= 0 (0 = one tile per array), got {args.tile}")
    data = load_dataset(args.dataset, 0)
    if args.train_points:
        data = replace(data, x_train=data.x_train[:args.train_points], y_train=data.y_train[:args.train_points])
    if args.test_points:
        data = replace(data, x_test=data.x_test[:args.test_points], y_test=data.y_test[:args.test_points])
    width = args.width
    if width is None:   # the default, raised to the shortest pulse the station's write instrument gives
        from ..ops.chips import planned_limits
        from ..ops.pulse_schedule import chip_width

        width = chip_width(0.0, InSituConfig().width,
                           planned_limits(station=args.station) if args.station is not None else None)
    cfg = InSituConfig(rule=args.rule, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       amplitude=args.amplitude, width=width, tile=args.tile or None,
                       center_cycles=args.center_cycles, center_fine_cycles=args.center_fine_cycles, seed=args.seed)
    n_out = 1 if data.n_classes == 1 else data.n_classes
    shape = chip_shape_for(data.n_features, args.hidden, n_out, cfg)
    what = f"in-situ {args.rule} training of {args.dataset} ({args.hidden} hidden"
    if args.station is not None:
        from ..ops.chips import load_station, planned_limits

        if args.size is not None or args.chips != 1:
            raise ValueError("--size and --chips apply to the simulated chip; a station is one chip, and the "
                             "network uses the top-left corner of its array")
        st = load_station(args.station)
        if shape[0] > st.rows or shape[1] > st.cols:
            raise ValueError(f"the network ({args.rule}, {args.hidden} hidden, tile {cfg.tile}) needs a "
                             f"{shape[0]}x{shape[1]} array; station {args.station} has {st.rows}x{st.cols}")
        _insitu_limits(cfg, planned_limits(station=args.station), f"station {args.station}'s", st.limits)
        chip = {"chip": f"station {args.station}", "preset": None,
                "station": {"file": str(args.station), "name": st.name, "array": [st.rows, st.cols]}}
        size, n_chips = shape, 1
        print(f"{what}) on station {st.name} ({args.station}), {shape[0]}x{shape[1]} of its "
              f"{st.rows}x{st.cols} array, seed {args.seed} ...", flush=True)
    else:
        from ..ops.chips import PRESETS

        if args.preset not in PRESETS:
            raise ValueError(f"unknown preset {args.preset!r}; known presets: {', '.join(sorted(PRESETS))}")
        size = shape if args.size is None else tuple(args.size)
        if size[0] < shape[0] or size[1] < shape[1]:
            raise ValueError(f"the network ({args.rule}, {args.hidden} hidden, tile {cfg.tile}) needs a "
                             f"{shape[0]}x{shape[1]} array; --size is {size[0]}x{size[1]}")
        if args.chips < 1:
            raise ValueError(f"--chips must be >= 1, got {args.chips}")
        _insitu_limits(cfg, PRESETS[args.preset].limits, f"the {args.preset} chip's")
        n_chips = args.chips
        chip = {"chip": "sim", "preset": args.preset, "chips": n_chips, "array": list(size)}
        print(f"{what}) on a simulated {args.preset} {size[0]}x{size[1]} chip"
              + (f" ({n_chips} chips)" if n_chips > 1 else "") + f", seed {args.seed} ...", flush=True)
    with open_chip(args.chip, size, args.preset, args.seed, n_chips, args.line_resistance, args.station) as xb:
        result = train_in_situ(xb, data, args.hidden, cfg, log=None if args.quiet else (lambda m: print("  " + m)))
    rep = {**chip, "seed": args.seed, "chip_shape": list(shape), "train_points": int(data.x_train.shape[0]),
           "test_points": int(data.x_test.shape[0]), **result.summary()}
    print(f"  test accuracy {100 * rep['mean_test_accuracy']:.2f} %, {sum(rep['pulses'])} pulses, "
          f"{rep['wall_s']:.1f} s")
    _write_json(args.json, rep)
    return 0


def format_deploy(r: dict) -> str:
    p = r["placement"]
    lines = [f"deployment of {r['model']} on {r['chip']}"
             + (f" ({r['preset']}, seed {r['seed']})" if r.get("preset") else ""),
             f"  placement   {p['arrangement']} on {p['chip'][0]}x{p['chip'][1]}, "
             f"{p['cells_used']} cells in {p['extent'][0]}x{p['extent'][1]}"]
    for L in r["layers"]:
        b = L["block"]
        st = ", ".join(f"{k} {v}" for k, v in L["status"].items() if v)
        lines.append(f"  layer {L['layer']}     rows {b['row']}..{b['row'] + b['rows'] - 1}, cols {b['col']}.."
                     f"{b['col'] + b['cols'] - 1}: {st}; error mean {100 * L['rel_error_mean']:.2f} %, "
                     f"max {100 * L['rel_error_max']:.2f} %, weight rms {100 * L['weight_error_rms']:.2f} % of w_max"
                     + (f", {L['compensated']} partner(s) re-targeted" if L["compensated"] else ""))
    a = r.get("accuracy")
    if a:
        pd = "chip_mvm_without_predistortion" in a
        applied = (r.get("predistortion") or {}).get("applied", pd)
        lines.append(f"  accuracy    software {100 * a['software']:.2f} %, chip (analog MVM) {100 * a['chip_mvm']:.2f} %"
                     + ((" with pre-distortion" if applied else " (pre-distortion not applied: the line model expected "
                         "no smaller product error than the chip's as tuned)") if pd else "")
                     + f", read-back weights {100 * a['readback']:.2f} %  ({a['test_points']} test points)")
        err = ", ".join(f"{100 * e:.2f} %" for e in a["product_error"])
        if pd:
            top = r["predistortion"]["mapping_window_uS"][1]
            lines.append(f"  without pre-distortion  chip (analog MVM) {100 * a['chip_mvm_without_predistortion']:.2f} %, "
                         f"product error per layer {', '.join(f'{100 * e:.2f} %' for e in a['product_error_without_predistortion'])}"
                         f" -> {err} with (line estimate {r.get('line_estimate_ohm', r['line_resistance_ohm']):.3g} ohm; "
                         f"weights mapped up to {top:.0f} uS)")
        else:
            lines.append(f"  product error per layer {err} (chip's product vs the software pre-activations, rms)")
    lines.append(f"  wall time   {r['wall_s']:.2f} s")
    return "\n".join(lines)


def format_evaluate(r: dict) -> str:
    return "\n".join([
        f"Monte Carlo evaluation of {r['model']} ({r['mode']}, {r['transfers']} transfers, seed {r['seed']})",
        f"  dataset / evaluator {r['dataset']} / "
        + (r['variability'] if 'variability' in r else f"write-verify onto {r['preset']} chips"),
        f"  accuracy            mean {100 * r['mean_accuracy']:.2f} %, std {100 * r['std_accuracy']:.2f} %, "
        f"min {100 * r['min_accuracy']:.2f} %  (software {100 * r['software_accuracy']:.2f} %)",
        f"  points >= 95 %      {100 * r['frac_points_ge_95']:.2f} % of {r['test_points']}",
        *([f"  without pre-dist.   mean {100 * w['mean_accuracy']:.2f} %, std {100 * w['std_accuracy']:.2f} %, "
           f"min {100 * w['min_accuracy']:.2f} %, points >= 95 % {100 * w['frac_points_ge_95']:.2f} % "
           f"(same chips before pre-distortion; line estimate {r['line_estimate_ohm']:.3g} ohm)"]
          if (w := r.get("without_predistortion")) else []),
        f"  wall time           {r['wall_s']:.2f} s",
    ])
