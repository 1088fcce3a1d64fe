"""The network commands of ``xbar``: train, deploy (and chip-in-the-loop fine-tuning), evaluate.

    xbar train --dataset moons [--hidden 8] (--aware | --regular) [--noise 0.1] --seed S --out MODEL.pt
    xbar deploy MODEL.pt --chip sim | --station STATION.toml [--tolerance 0.01] --json REPORT.json
    xbar evaluate MODEL.pt --transfers N [--mode statistical | tuned] --seed S --json REPORT.json
    xbar deploy ... --finetune ROUNDS [--finetuned-out MODEL.pt]   (chip-in-the-loop fine-tuning)
    xbar insitu --rule sgd|manhattan|tiki-taka|shd [--preset asymmetric] [--epochs N] --seed S --json R.json
    xbar fit-variability --chip sim [--preset P] --size 16x16 --seed S --out VARIABILITY.json
                                               (train/evaluate --variability take a preset or such a file)
"""
from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from pathlib import Path

from models.datasets import DATASETS, dataset_of, load_dataset
from models.variability import DRIFT_COUNTS, VARIABILITY_PRESETS
from models.variability_fit import load_variability
from programming.schedule import ORDERS

#: help of --variability (train, evaluate)
VARIABILITY_HELP = (f"variability model: a preset ({', '.join(sorted(VARIABILITY_PRESETS))}) or a "
                    "VARIABILITY.json written by xbar fit-variability")


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


def add_model_commands(sub, chip_args) -> None:
    """Add the network subcommands; ``chip_args(parser, default_size)`` adds --chip/--station etc."""
    t = sub.add_parser("train", help="train a network (regular or hardware-aware) and save it")
    t.add_argument("--dataset", choices=DATASETS, default="moons")
    t.add_argument("--hidden", type=_hidden, default=None, help="hidden layer sizes, e.g. 8 or 32,16")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--aware", dest="aware", action="store_true", default=True,
                      help="hardware-aware training (default)")
    mode.add_argument("--regular", dest="aware", action="store_false", help="regular training")
    t.add_argument("--noise", type=float, default=0.0, help="multiplicative conductance noise injected in training")
    t.add_argument("--variability", default="tio2-3it", metavar="PRESET|FILE.json",
                   help=VARIABILITY_HELP + " (sampled by aware training)")
    t.add_argument("--epochs", type=int, default=None, help="training epochs (default: the dataset's)")
    t.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the dataset's)")
    t.add_argument("--kl", type=float, default=0.0, help="weight of the variational KL regularizer")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, required=True, metavar="MODEL.pt")

    e = sub.add_parser("evaluate", help="Monte Carlo robustness of a network over many transfers")
    e.add_argument("model", type=Path, metavar="MODEL.pt")
    e.add_argument("--transfers", type=int, default=1000)
    e.add_argument("--mode", choices=("statistical", "tuned"), default="statistical")
    e.add_argument("--variability", default="tio2-3it", metavar="PRESET|FILE.json",
                   help=VARIABILITY_HELP + " (statistical mode)")
    e.add_argument("--preset", default="tio2-3it", help="simulated chip preset (tuned mode)")
    e.add_argument("--tolerance", type=float, default=0.01, help="write-verify tolerance (tuned mode)")
    e.add_argument("--no-compensate", action="store_true", help="no stuck-device compensation")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--quiet", action="store_true", help="no progress bar (tuned mode)")
    e.add_argument("--json", type=Path, default=None, metavar="REPORT.json")

    f = sub.add_parser("fit-variability", help="tune targets with the trace on and fit the variability model "
                                               "(tuning spread, neighbour drift, stuck devices) to the records")
    chip_args(f, "16x16")
    f.add_argument("--targets", default="random", help="'random' (uniform in the window) or FILE.npy (S)")
    f.add_argument("--tolerance", type=float, default=0.01, help="write-verify tolerance (0.01 = 1 %%)")
    f.add_argument("--passes", type=int, default=3, help="tuning passes incl. re-verify passes")
    f.add_argument("--order", choices=ORDERS, default="row", help="cell order")
    f.add_argument("--base", default="tio2-3it", metavar="PRESET|FILE.json",
                   help="model supplying the window, the k clamp and every figure with too few samples")
    f.add_argument("--drift-count", choices=DRIFT_COUNTS, default=None,
                   help="cells counted in k: same row/column ('line') or all (default: the base model's)")
    f.add_argument("--out", type=Path, required=True, metavar="VARIABILITY.json",
                   help="write the fitted model here (for train/evaluate --variability)")
    f.add_argument("--json", type=Path, default=None, metavar="REPORT.json",
                   help="also write the fit report (binned figures, sample counts, fallbacks)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_fit_variability)


def add_insitu_command(sub) -> None:
    from models.insitu import RULES

    i = sub.add_parser("insitu", help="train a network in situ: weights on the chip, changed only by pulses")
    i.add_argument("--rule", choices=RULES, default="shd", help="update rule")
    i.add_argument("--dataset", choices=DATASETS, default="moons")
    i.add_argument("--hidden", type=int, default=8)
    i.add_argument("--preset", default="asymmetric", help="simulated chip preset")
    i.add_argument("--epochs", type=int, default=20)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--json", type=Path, default=None, metavar="REPORT.json")


def cmd_insitu(args, open_chip) -> int:
    from models.insitu import InSituConfig, chip_shape_for, train_in_situ

    if args.hidden < 1:
        raise ValueError(f"--hidden must be >= 1, got {args.hidden}")
    data = load_dataset(args.dataset, 0)
    cfg = InSituConfig(rule=args.rule, epochs=args.epochs, seed=args.seed)
    n_out = 1 if data.n_classes == 1 else data.n_classes
    shape = chip_shape_for(data.n_features, args.hidden, n_out, cfg)
    print(f"in-situ {args.rule} training of {args.dataset} ({args.hidden} hidden) on a simulated "
          f"{args.preset} {shape[0]}x{shape[1]} chip, seed {args.seed} ...", flush=True)
    with open_chip("sim", shape, args.preset, args.seed) as xb:
        result = train_in_situ(xb, data, args.hidden, cfg)
    rep = {"preset": args.preset, "chip_shape": list(shape), **result.summary()}
    print(f"  test accuracy {100 * rep['mean_test_accuracy']:.2f} %, {sum(rep['pulses'])} pulses, "
          f"{rep['wall_s']:.1f} s")
    _write_json(args.json, rep)
    return 0


def cmd_fit_variability(args, open_chip) -> int:
    """Tune (random) targets with the trace on, fit the variability model, write it as JSON."""
    from models.variability_fit import fit_variability
    from programming.tuner import TunerConfig, tune

    from .chips import make_targets

    base = load_variability(args.base)
    cfg = TunerConfig(tolerance=args.tolerance, passes=args.passes, order=args.order, seed=args.seed)
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


@contextmanager
def _variability_name(spec: str):
    """The name under which ``spec`` (a preset or a fitted JSON file) is known to training: a
    file's model is registered under its path for the duration."""
    model = load_variability(spec)
    if spec in VARIABILITY_PRESETS:
        yield spec
        return
    VARIABILITY_PRESETS[spec] = model
    try:
        yield spec
    finally:
        VARIABILITY_PRESETS.pop(spec, None)


def cmd_train(args) -> int:
    with _variability_name(args.variability):
        return _train(args)


def _train(args) -> int:
    from models.model_io import save_model
    from models.train import TrainConfig, train

    kw = dict(dataset=args.dataset, hidden=args.hidden, aware=args.aware, noise=args.noise,
              variability=args.variability, kl_weight=args.kl, seed=args.seed)
    if args.epochs is not None:
        kw["epochs"] = args.epochs
    if args.lr is not None:
        kw["lr"] = args.lr
    cfg = TrainConfig.for_dataset(**kw)
    kind = "hardware-aware" if cfg.aware else "regular"
    print(f"training {kind} {cfg.dataset} network {[*cfg.hidden]} hidden, noise {cfg.noise:g}, seed {cfg.seed} ...",
          flush=True)
    r = train(cfg)
    metrics = {"train_accuracy": r.train_accuracy, "test_accuracy": r.test_accuracy, "wall_s": r.wall_s}
    path = save_model(args.out, r.model, cfg.to_dict(), metrics)
    print(f"  train accuracy {100 * r.train_accuracy:.2f} %, test accuracy {100 * r.test_accuracy:.2f} %, "
          f"{r.wall_s:.1f} s\nmodel written to {path}")
    return 0


def cmd_evaluate(args, open_chip) -> int:
    from models.deploy import DeployConfig, network_extent
    from models.evaluate import evaluate_statistical, evaluate_tuned
    from models.model_io import load_model

    model, meta = load_model(args.model)
    data = dataset_of(meta)
    variability = load_variability(args.variability)
    if args.transfers < 1:
        raise ValueError(f"--transfers must be >= 1, got {args.transfers}")
    extra = {}
    if args.mode == "statistical":
        stats = evaluate_statistical(model, data, variability, args.transfers, args.seed,
                                     compensate=not args.no_compensate)
        extra["variability"] = args.variability
    else:
        size = network_extent(model)
        cfg = DeployConfig(tolerance=args.tolerance, compensate=not args.no_compensate, seed=args.seed)
        with open_chip("sim", size, args.preset, args.seed, args.transfers) as chips:
            stats, dep_report = evaluate_tuned(model, data, chips, cfg, progress=not args.quiet)
        extra.update(preset=args.preset, tuning=dep_report["tuning"])
    rep = {"model": str(args.model), "seed": args.seed, **stats.report(), **extra,
           "software_accuracy": float((meta.get("metrics") or {}).get("test_accuracy", float("nan")))}
    print(format_evaluate(rep))
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
        lines.append(f"  accuracy    software {100 * a['software']:.2f} %, chip (analog MVM) {100 * a['chip_mvm']:.2f} %, "
                     f"read-back weights {100 * a['readback']:.2f} %  ({a['test_points']} test points)")
    lines.append(f"  wall time   {r['wall_s']:.2f} s")
    return "\n".join(lines)


def format_evaluate(r: dict) -> str:
    return "\n".join([
        f"Monte Carlo evaluation of {r['model']} ({r['mode']}, {r['transfers']} transfers, seed {r['seed']})",
        f"  accuracy            mean {100 * r['mean_accuracy']:.2f} %, std {100 * r['std_accuracy']:.2f} %, "
        f"min {100 * r['min_accuracy']:.2f} %  (software {100 * r['software_accuracy']:.2f} %)",
        f"  points >= 95 %      {100 * r['frac_points_ge_95']:.2f} % of {r['test_points']}",
        f"  wall time           {r['wall_s']:.2f} s",
    ])
