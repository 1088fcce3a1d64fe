"""The base of every operator procedure: pymeasure ``Procedure`` with the chip parameters, the run
folder's metadata, and a crossbar opened in ``startup`` and made safe in ``shutdown``.

A procedure runs on any :class:`~programming.crossbar.Crossbar`: the simulated chip (``chip =
"sim"``, the default), the mock bench or a real station (``station = STATION.toml``).  With
``chip_from = RUN_DIR`` it continues on the chip a previous run left: the same station, or for
the simulated chip the same virtual chip in the state that run saved (``chip_state.npz``), so a
simulated lab day (form → tune → retention) happens on one chip.

Parameters are checked in :meth:`XbarProcedure.check` before anything is sourced; every
procedure adds its own checks (compliance, voltages, cells inside the array).
"""
from __future__ import annotations

import getpass
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pymeasure.experiment import (BooleanParameter, FloatParameter, IntegerParameter, ListParameter, Metadata,
                                  Parameter, Procedure)

from mock_hw.presets import DEFAULT_PRESET, PRESETS
from programming.crossbar import Crossbar

from .chips import check_memory, load_station, open_chip, parse_size, planned_limits
from ..deferred import defer_units
from ..storage.run_data import JOURNAL_DIR, RUN_JSON, read_json

defer_units()       # data columns' units parsed with pint when one is needed, not for every run

CHIP_STATE = "chip_state.npz"
#: the parameters that define the chip (taken over from the run named by ``chip_from``)
CHIP_KEYS = ("chip", "station", "preset", "size", "chips", "seed", "pristine", "line_resistance", "ideal_lines")


class ProcedureStopped(Exception):
    """The operator asked the procedure to stop (Ctrl-C, or Abort in the window); what was measured
    so far is saved."""


def software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"xbarlab {version('xbarlab')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "xbarlab (not installed)"


class XbarProcedure(Procedure):
    """Chip parameters and run metadata shared by every xbarlab procedure.

    Subclasses set ``NAME`` (the ``xbar`` subcommand and run folder suffix), ``DATA_COLUMNS``
    (with units in parentheses, SI) and implement :meth:`run`.  The run folder is
    :attr:`run_dir` (set by the runner); :attr:`maps`, :attr:`series`, :attr:`trace` and
    :attr:`report` are written there when the procedure ends, finished or not.
    """

    NAME = "procedure"
    RESUMABLE = False

    chip = ListParameter("Chip", choices=["sim", "station"], default="sim")
    station = Parameter("Station file", default="")
    preset = ListParameter("Preset", choices=sorted(PRESETS), default=DEFAULT_PRESET)
    size = Parameter("Array size", default="8x8")
    chips = IntegerParameter("Simulated chips", minimum=1, maximum=100000, default=1)
    seed = IntegerParameter("Seed", minimum=0, maximum=2**31 - 1, default=0)
    pristine = BooleanParameter("Pristine chip", default=False)
    line_resistance = FloatParameter("Line resistance (0 = the preset's)", units="ohm", minimum=0, default=0.0)
    # `--line-resistance 0` on the command line: ideal lines whatever the preset (a separate flag, so
    # a stored run's line_resistance 0.0 keeps meaning the preset's)
    ideal_lines = BooleanParameter("Ideal lines (0 ohm, whatever the preset)", default=False)
    chip_from = Parameter("Continue on the chip of run", default="")

    station_name = Metadata("Station", default="")
    chip_id = Metadata("Chip ID", default="")
    instruments = Metadata("Instruments", default="")
    version = Metadata("Software", default="")
    start_time = Metadata("Start time", default="")
    operator = Metadata("Operator", default="")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.run_dir: Path | None = None
        self.xb: Crossbar | None = None
        self.resuming = False
        self.maps: dict[str, np.ndarray] = {}
        self.series: dict[str, np.ndarray] = {}
        self.trace: dict | None = None
        self.report: dict = {}
        self.safe_state: str | None = None       # what shutdown confirmed (None: no chip was opened)

    # --------------------------------------------------------------------------- parameters
    @property
    def array_size(self) -> tuple[int, int]:
        return parse_size(self.size)

    def check(self) -> None:
        """Refuse bad parameters with a clear ValueError before anything is sourced."""
        self.array_size  # noqa: B018 - raises on a malformed size
        if self.chip == "station" and not self.station:
            raise ValueError("chip 'station' needs a station file")
        if self.chip_from:
            src = Path(self.chip_from)
            if not (src / RUN_JSON).is_file():
                raise ValueError(f"--chip-from {src}: not a run folder (no {RUN_JSON})")
        r_line = float(self.line_resistance)
        if not np.isfinite(r_line) or r_line < 0:
            raise ValueError(f"--line-resistance {self.line_resistance!r}: must be a finite resistance >= 0 Ω")
        r_line = self.r_line_override()
        size = self.array_size
        if self.chip == "station":
            st = load_station(self.station)
            if size[0] > st.rows or size[1] > st.cols:
                raise ValueError(f"--size {size[0]}x{size[1]} is larger than the station's {st.rows}x{st.cols} array")
        else:
            check_memory(size, int(self.chips), r_line)
        self._state_source()                      # a resume's chip state is there (before anything opens)

    def r_line_override(self) -> float | None:
        """The simulated chip's line resistance per segment, Ω: 0 for ideal lines, the given value,
        or None for the preset's."""
        return 0.0 if self.ideal_lines else (float(self.line_resistance) or None)

    def planned_shape(self) -> tuple[int, int]:
        """The shape of the crossbar this run will open (a station's whole array), known before
        opening it."""
        if self.chip == "station":
            st = load_station(self.station)
            return st.rows, st.cols
        return self.array_size

    def planned_window(self) -> tuple[float, float]:
        """The programming window (S) of the chip this run will open, known before opening it."""
        if self.chip == "station":
            return Crossbar.programming_window
        return PRESETS[self.preset].programming_window

    def check_limits(self, limits) -> None:
        """Refuse voltages, widths or currents the chip's ``limits`` (a
        :class:`~programming.crossbar.SafetyLimits`) forbid; procedures that source override it."""

    def planned_limits(self):
        """The limits of the chip this run will open, known before opening it: the preset's, or
        the station file's (pulse widths narrowed to what its drive instrument sources; with
        ``--on-instrument``, to the 2600B's whose script writes)."""
        return planned_limits(self.preset, self.station if self.chip == "station" else None,
                              on_instrument=bool(getattr(self, "on_instrument", False)))

    def validate(self) -> None:
        """Every check that needs no chip: the parameters, then the planned chip's limits (and on
        a station, that its bias channels can serve the write scheme asked for)."""
        self.check()
        self.check_limits(self.planned_limits())
        scheme = getattr(self, "scheme", None)
        if self.chip == "station" and scheme in ("v/2", "v/3", "float"):
            load_station(self.station).check_write_scheme(scheme, "--scheme")

    def adopt_chip_of(self, run_dir: Path) -> None:
        """Take the chip parameters of an earlier run (``chip_from``)."""
        meta = read_json(Path(run_dir) / RUN_JSON)
        params = meta.get("parameters", {})
        for key in CHIP_KEYS:
            if key in params:
                setattr(self, key, params[key])

    def chip_overrides(self) -> dict:
        """Extra keyword arguments for :func:`procedures.ops.chips.open_chip` (e.g. a compliance;
        with ``--on-instrument``, the bench of the 2600B's script)."""
        return {"on_instrument": True} if getattr(self, "on_instrument", False) else {}

    # ------------------------------------------------------------------------- chip lifetime
    def open_crossbar(self) -> Crossbar:
        station = self.station if self.chip == "station" else None
        xb = open_chip("sim", self.array_size, self.preset, int(self.seed), int(self.chips),
                       self.r_line_override(), station,
                       pristine=bool(self.pristine), **self.chip_overrides())
        state = self._state_source()
        if state is not None and hasattr(xb, "load_state_dict"):
            from mock_hw.sim_chip import load_chip_state
            try:
                load_chip_state(xb, state)
            except Exception as exc:  # noqa: BLE001 - a damaged file: one line naming it
                xb.close()
                raise ValueError(f"{state}: the saved chip state is unreadable ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:100] if str(exc) else ''})") from None
            except BaseException:
                xb.close()
                raise
        return xb

    def _state_source(self) -> Path | None:
        """The saved simulated-chip state to continue from: this run's own (on resume), else the
        ``chip_from`` run's."""
        own = self.run_dir if self.resuming else None
        if own is not None and self.chip == "sim" and not (own / CHIP_STATE).is_file() and any(
                p.stat().st_size for p in (own / JOURNAL_DIR).glob("passes-*.jsonl")):
            raise ValueError(f"--resume {own}: the simulated chip's saved state ({CHIP_STATE}) is missing, so the "
                             f"cells already tuned cannot be continued on the same chip; start a new run")
        for folder in (own, (Path(self.chip_from) if self.chip_from else None)):
            if folder is not None and (folder / CHIP_STATE).is_file():
                if self.chip == "sim":
                    from mock_hw.chip_state import missing_population_file
                    lost = missing_population_file(folder / CHIP_STATE)
                    if lost is not None:
                        raise ValueError(f"{folder / CHIP_STATE}: the simulated chip's saved population ({lost}) is "
                                         f"missing, so the chip cannot be restored; start a new run")
                return folder / CHIP_STATE
        if self.chip_from and self.chip == "sim":
            raise ValueError(f"--chip-from {self.chip_from}: the run saved no simulated chip state ({CHIP_STATE})")
        return None

    def save_chip_state(self) -> None:
        """Save the simulated chip's state in the run folder (a bench keeps its own)."""
        if self.xb is not None and hasattr(self.xb, "state_dict") and self.run_dir is not None:
            from mock_hw.sim_chip import save_chip_state
            save_chip_state(self.xb, self.run_dir / CHIP_STATE)

    def identity(self) -> dict:
        """Station, chip ID and instrument identities of the open crossbar."""
        xb = self.xb
        if self.chip == "station":
            drivers = getattr(xb, "drivers", {})
            ids = {}
            for name, drv in drivers.items():
                try:
                    ids[name] = drv.identity()
                except Exception as exc:  # noqa: BLE001 - an identity is metadata, not a reason to stop
                    ids[name] = f"unknown ({exc})"
            st = getattr(xb, "station", None)
            chip_id = getattr(st, "chip_id", "") or "unlabelled (set [station] chip_id in the station file)"
            return {"station": f"{getattr(st, 'name', '?')} ({self.station})",
                    "chip_id": f"{chip_id}, {xb.shape[0]}x{xb.shape[1]}", "instruments": ids}
        r, c = self.array_size
        return {"station": "simulated", "chip_id": f"sim/{self.preset}/seed {self.seed}/{r}x{c}"
                + (f"/{self.chips} chips" if int(self.chips) > 1 else "") + ("/pristine" if self.pristine else ""),
                "instruments": {"chip": f"SimulatedCrossbar ({self.preset})"}}

    # ------------------------------------------------------------------------ pymeasure hooks
    def startup(self):
        self.validate()
        self.xb = self.open_crossbar()
        try:
            self.check_limits(self.xb.limits)     # the chip's own limits (e.g. a lowered compliance)
        except BaseException:
            self.shutdown()
            raise
        ident = self.identity()
        self.station_name = ident["station"]
        self.chip_id = ident["chip_id"]
        self.instruments = "; ".join(f"{k}: {v}" for k, v in ident["instruments"].items())
        self.version = software_version()
        self.start_time = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            self.operator = getpass.getuser()
        except Exception:  # noqa: BLE001 - no login name in some containers
            self.operator = platform.node()
        self.ident = ident

    def execute(self):
        self.run()

    def run(self) -> None:  # pragma: no cover - every procedure implements it
        raise NotImplementedError

    def finalize(self) -> None:
        """Fill :attr:`maps`, :attr:`series`, :attr:`trace` and :attr:`report` from what was
        measured (also after an interruption: then with what there is)."""

    def shutdown(self):
        """Outputs off, relays open (the crossbar's close); the simulated chip's state saved.
        :attr:`safe_state` then says what the bench confirmed (see :meth:`safe_state_text`)."""
        if self.xb is None:
            return
        try:
            self.save_chip_state()
        finally:
            xb, self.xb = self.xb, None
            try:
                xb.close()
            finally:
                self.safe_state = self.safe_state_text(xb)

    @staticmethod
    def safe_state_text(xb) -> str:
        """What the operator may be told about the chip's end state: for a bench, only what its
        instruments confirmed when queried (and what they could not confirm, named)."""
        report = getattr(xb, "safe_report", None)
        if report is not None:
            return report.text()
        if hasattr(xb, "drivers"):
            return "safe state not confirmed (the bench was not queried)"
        return "simulated chip idle (nothing sourced)"

    # -------------------------------------------------------------------------------- helpers
    def stop_requested(self) -> bool:
        return bool(self.should_stop())

    def stop_point(self) -> None:
        """Raise :class:`ProcedureStopped` if the operator asked to stop."""
        if self.stop_requested():
            raise ProcedureStopped(f"{self.NAME} stopped on request")

    def count(self, done: int, total: int, unit: str = "cell", stage: str | None = None) -> None:
        """Progress: pymeasure's percentage (windows) and the count for the terminal bar; a new
        ``stage`` (e.g. 'pass 2 (re-verify)') starts a new bar whose total is known up front."""
        self.emit("progress", 100.0 * done / max(total, 1))
        self.emit("count", (int(done), int(total), unit, stage))

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices of every cell of the array (row-major), 1-D."""
        r, c = np.indices(self.xb.shape)
        return r.ravel(), c.ravel()
