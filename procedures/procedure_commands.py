"""The operator procedures' ``xbar`` subcommands and their terminal summaries."""
from __future__ import annotations

from .cli_runs import add_procedure_command
from .endurance import EnduranceProcedure
from .forming import FormingProcedure
from .iv_sweep import IVProcedure
from .network import DeployProcedure, InferenceProcedure
from .read_map import ReadMapProcedure
from .retention import RetentionProcedure
from .tables import format_read_summary, format_report, format_tune_summary
from .tune_array import TuneProcedure

#: every operator procedure, by subcommand
PROCEDURES = {cls.NAME: cls for cls in (FormingProcedure, IVProcedure, ReadMapProcedure, TuneProcedure,
                                        DeployProcedure, InferenceProcedure, RetentionProcedure,
                                        EnduranceProcedure)}


def _tune_summary(proc) -> str:
    r = dict(proc.report)
    r.update(chip=proc.chip if proc.chip == "sim" else f"station {proc.station}", preset=proc.preset,
             seed=proc.seed)
    return format_tune_summary(r)


def _deploy_summary(proc) -> str:
    from .cli_models import format_deploy
    text = format_deploy({"chip": proc.chip if proc.chip == "sim" else f"station {proc.station}",
                          "preset": proc.preset, "seed": proc.seed, **proc.report})
    ft = proc.report.get("finetune")
    if ft:
        text += (f"\n  fine-tuned  chip accuracy {100 * ft['accuracy_before']:.2f} % -> "
                 f"{100 * ft['accuracy_after']:.2f} % in {ft['rounds']} rounds ({ft['cells_retuned']} cells "
                 f"re-tuned, {ft['wall_s']:.1f} s); model saved as {proc.run_dir / 'finetuned.pt'}")
    return text


#: terminal summary of a finished run, by subcommand
FORMATTERS = {
    "tune": _tune_summary,
    "deploy": _deploy_summary,
    "read": lambda proc: format_read_summary(proc.maps["conductance"], proc.scheme),
    "form": lambda proc: format_report("forming", proc.report),
    "iv": lambda proc: format_report("IV sweep", proc.report),
    "infer": lambda proc: format_report("inference on chip", proc.report),
    "retention": lambda proc: format_report("retention", proc.report),
    "endurance": lambda proc: format_report("endurance", proc.report),
}

HELP = {
    "form": "electroform every cell with ramped pulses under compliance",
    "iv": "IV sweep of one cell (DC read sweep or pulsed switching loop)",
    "read": "read the conductance map of the array",
    "tune": "tune every cell to a target conductance by write-verify",
    "deploy": "program a trained network onto a chip and measure its accuracy",
    "infer": "classify the test set through the chip's matrix-vector products",
    "retention": "read the map at intervals (retention)",
    "endurance": "SET/RESET cycling with periodic reads (endurance)",
}
SIZES = {"tune": "16x16", "deploy": "", "infer": ""}
POSITIONAL = {"deploy": ("model",), "infer": ("model",)}


def add_procedure_commands(sub) -> None:
    for name, cls in PROCEDURES.items():
        add_procedure_command(sub, cls, HELP[name], SIZES.get(name, "8x8"), POSITIONAL.get(name, ()))
