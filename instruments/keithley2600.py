"""Keithley 2600B System SourceMeter (TSP; channels ``smua`` / ``smub``), e.g. the 2636B.

:class:`Keithley2600` extends pymeasure's own ``Keithley2600`` driver (its ``ChA`` / ``ChB``
channels, ``next_error`` and ``check_errors`` stay available and unchanged) with:

* two channels ``smua`` / ``smub`` of :class:`SmuChannel`, a
  :class:`~instruments.roles.SourceChannel`.  They are new-style ``pymeasure.instruments.Channel``
  objects whose properties are declared with ``"smu{ch}"`` placeholders.  pymeasure's old
  ``keithley2600.Channel`` prefixes every command itself but drops the ``cast`` /
  ``get_process`` arguments of its properties (its ``values()`` ignores them), so a query that
  prints ``true`` / ``false`` (``smuX.source.compliance``) or a constant assignment
  (``smuX.source.output = smuX.OUTPUT_ON``) could not be declared with it; with the placeholder
  every string the driver sends is written out in full below and in the properties;
* :class:`~instruments.roles.Identified` (``*IDN?``, ``errorqueue.next()``) and timeouts that name
  the instrument and the command (:class:`~instruments.base.TimeoutNamingMixin`);
* the on-instrument write-verify script ``instruments/tsp/xbar_write_verify.lua``: one call tunes
  one routed cell and prints the whole trace in one line (:meth:`Keithley2600.write_verify`).

Strings sent (channel ``a`` shown; ``b`` the same with ``smub`` and trigger timer 2):

* setup(compliance=1e-3, nplc=1) — six lines, no reply (off means high impedance, so that a pulse
  generator can drive the row this channel reads)::

    smua.source.func = smua.OUTPUT_DCVOLTS
    smua.source.levelv = 0
    smua.source.limiti = 0.001
    smua.measure.nplc = 1
    smua.measure.autorangei = smua.AUTORANGE_ON
    smua.source.offmode = smua.OUTPUT_HIGH_Z

* set_level(0.2): ``smua.source.levelv = 0.2``
* enable(): ``smua.source.output = smua.OUTPUT_ON``; disable(): ``smua.source.levelv = 0`` then
  ``smua.source.output = smua.OUTPUT_OFF``; output_enabled(): ``print(smua.source.output)``
  (prints ``1.00000e+00`` / ``0.00000e+00``)
* measure_current(): ``print(smua.measure.i())``; compliance_tripped():
  ``print(smua.source.compliance)`` (prints ``true`` / ``false``)
* pulse(1.5, 1e-4): ONE line, ONE reply — the output goes to 0 V and on, then a one-point
  trigger-model sweep sources the amplitude; trigger timer 1, started by the source-complete
  event, ends the pulse after ``width`` and the end-pulse action returns to the idle level
  (``smua.source.levelv`` = 0 V); ``waitcomplete()`` waits for the sweep to finish and
  ``print(1)`` (reply ``1.00000e+00``) tells the driver it is over::

    smua.source.levelv = 0; smua.source.output = smua.OUTPUT_ON; smua.trigger.source.listv({1.5});
    smua.trigger.source.action = smua.ENABLE; smua.trigger.measure.action = smua.DISABLE;
    smua.trigger.arm.count = 1; smua.trigger.arm.stimulus = 0; smua.trigger.source.stimulus = 0;
    smua.trigger.count = 1; smua.trigger.endpulse.action = smua.SOURCE_IDLE;
    smua.trigger.endsweep.action = smua.SOURCE_IDLE; trigger.timer[1].count = 1;
    trigger.timer[1].passthrough = false; trigger.timer[1].delay = 0.0001;
    trigger.timer[1].stimulus = smua.trigger.SOURCE_COMPLETE_EVENT_ID;
    smua.trigger.endpulse.stimulus = trigger.timer[1].EVENT_ID; smua.trigger.initiate(); waitcomplete();
    print(1)

  (sent on one line, ``"; "``-separated, as printed by :func:`pulse_command`).  Widths below the
  2600B's specified 100 µs are refused before anything is written (``MODEL_LIMITS``): the timer
  would take them, but the output does not settle, so the device would see a shorter, lower pulse.
* identity(): ``*IDN?``; drain_errors(): ``print(errorqueue.next())`` until code 0 (reply
  ``code<TAB>message<TAB>severity<TAB>node``).
* load_write_verify(): ``loadscript xbarwv``, the script's lines, ``endscript``,
  ``xbarwv.run()`` (defines ``xbar_wv``), then ``print(type(xbar_wv))`` -> ``function``.
* write_verify("a", 300e-6, {"v_read": 0.2}, sense="b"): ONE line and ONE reply, e.g.
  ``xbar_wv(smua, smub, 0.0003, 0.01, 0.2, 2, 1.1, 1.1, 0.05, 2.1, 2.4, 1e-06, 1, 0.0001, 0.2,
  200, 5, 0.02, 0.6, 2, 1e-06)`` -> ``converged,19,20,3.01241e-04,-2.00000e+00,5.76857e-05,
  1.10000e+00,6.04432e-05,...`` (arguments after the two SMUs: target, tolerance, guard,
  consecutive, v_set_start, v_reset_start, v_step, v_set_max, v_reset_max, width, width_ramp,
  width_max, v_read, max_pulses, pulses_at_cap, stuck_rel, stuck_ramp, RESET amplitude (0 = no
  initial RESET), reset_width).  Without ``sense`` the row SMU also measures (``smua, smua``):
  then every current the row draws counts, so route the cell so that nothing else conducts.
* tsplink_node_model(2): ``print(tsplink.state)`` (and ``print(tsplink.reset())`` when offline),
  then ``print(node[2].model)``.
* tune_cells("a", "b", 2, layout, [(0, 0), (1, 2)], [3e-4, 2e-4], cfg): ONE line, ONE reply — the
  script's ``xbar_tune(smua, smub, node[2], {"1A01",...}, {"2B01",...}, {"1F01",...},
  {"2F01",...}, {1,2}, {1,3}, {0.0003,0.0002}, <the 18 settings after target>)`` routes each
  cell through the 707B at TSP-Link node 2 itself and replies ``result;result`` (each as
  ``xbar_wv`` prints it); read_cells(...) sends ``xbar_read(..., 0.2, 1)`` and gets the readings.
"""
from __future__ import annotations

import dataclasses
import math
import re
import warnings
from importlib import resources

from pymeasure.instruments import Channel, Instrument
from pymeasure.instruments.keithley.keithley2600 import Keithley2600 as _PymeasureKeithley2600
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from programming.tuner import TunerConfig

from .base import (DEFAULT_TIMEOUT_MS, ErrorQueueMixin, TimeoutNamingMixin,
                   adapter_for, parse_tsp_error)
from .limits import SourceLimits
from .roles import InstrumentError, InstrumentTimeout

#: name of the named TSP script holding the write-verify function, and the function it defines
SCRIPT_NAME = "xbarwv"
SCRIPT_FUNCTION = "xbar_wv"
SCRIPT_RESOURCE = ("tsp", "xbar_write_verify.lua")
#: the statuses the write-verify script reports
WRITE_VERIFY_STATUSES = ("converged", "failed", "stuck")
_DOC = ("Series 2600B Reference Manual (2600BS-901-01): 'Although the 2600B can create pulses, it is "
        "not a pulse generator'; 2600B data sheet, pulse characteristics: minimum programmable pulse "
        "width 100 µs, resolution 1 µs; source ranges and smuX.source.limiti")


def _model(name: str, volts: float, amps: float) -> SourceLimits:
    return SourceLimits(name, _DOC, voltage=(-volts, volts), compliance_current=(1e-11, amps),
                        pulse_width=(100e-6, 10.0), pulse_width_resolution=1e-6)


#: per model: the 40 V / 3 A family (2601B, 2602B, 2604B) and the 200 V / 1.5 A family (2611B,
#: 2612B, 2614B, 2634B, 2635B, 2636B); DC current limits (pulsed currents above them are not
#: used here).  Pulses are built from the trigger model (:func:`pulse_command`) and specified from
#: 100 µs; the longest is capped at 10 s by this driver (not an instrument limit).
MODEL_LIMITS = {m: _model(m, 40.0, 3.0) for m in ("2601B", "2602B", "2604B")}
MODEL_LIMITS.update({m: _model(m, 200.0, 1.5) for m in ("2611B", "2612B", "2614B", "2634B", "2635B", "2636B")})
#: source range of a 2636B, V; current limit range, A; NPLC range (smuX.measure.nplc 0.001 – 25)
VOLTAGE_RANGE = MODEL_LIMITS["2636B"].voltage
LIMIT_I_RANGE = MODEL_LIMITS["2636B"].compliance_current
NPLC_RANGE = (0.001, 25.0)
#: pulse widths :meth:`SmuChannel.pulse` accepts, s (the 2600B's specified pulses)
PULSE_WIDTH_RANGE = MODEL_LIMITS["2636B"].pulse_width
#: widths the on-instrument write-verify script accepts (its trigger timer's delay), s; the script
#: still takes widths below the specified 100 µs (the output does not settle there)
WIDTH_RANGE = (1e-6, 10.0)
#: the trigger timer each channel's pulse() uses (the script uses timer 1)
PULSE_TIMER = {"a": 1, "b": 2}

#: the write-verify settings the script takes (names of :class:`programming.tuner.TunerConfig`) and
#: their defaults — TunerConfig's own, the one definition; v_read (None there: the chip's) is 0.2 V
_WV_KEYS = ("tolerance", "guard", "consecutive", "v_set_start", "v_reset_start", "v_step", "v_set_max",
            "v_reset_max", "width", "width_ramp", "width_max", "v_read", "max_pulses", "pulses_at_cap",
            "stuck_rel", "stuck_ramp", "initial_reset", "reset_amplitude", "reset_width")
WRITE_VERIFY_DEFAULTS = {k: getattr(TunerConfig(), k) if k != "v_read" else 0.2 for k in _WV_KEYS}
#: TunerConfig fields that concern the array-level tuner only; accepted and ignored
_IGNORED_KEYS = {f.name for f in dataclasses.fields(TunerConfig)} - set(_WV_KEYS)
#: TunerConfig's IR-drop correction (programming.ir_correction): the script reads raw; refused if set
_HOST_ONLY_KEYS = ("line_resistance", "access_resistance")


def write_verify_script() -> str:
    """The packaged TSP write-verify script (``instruments/tsp/xbar_write_verify.lua``)."""
    return resources.files(__package__).joinpath(*SCRIPT_RESOURCE).read_text(encoding="utf-8")


def script_lines(text: str | None = None) -> list[str]:
    """The lines the driver sends between ``loadscript`` and ``endscript``: the script's non-blank
    lines, trailing blanks removed."""
    text = write_verify_script() if text is None else text
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def _bool_reply(text) -> bool:
    t = str(text).strip()
    if t in ("true", "false"):
        return t == "true"
    raise ValueError(f"expected true/false, got {t[:30]!r}")


def pulse_command(ch: str, amplitude: float, width: float) -> str:
    """The one line :meth:`SmuChannel.pulse` sends for channel ``ch`` ("a" or "b")."""
    smu, tmr = f"smu{ch}", f"trigger.timer[{PULSE_TIMER[ch]}]"
    parts = [
        f"{smu}.source.levelv = 0",
        f"{smu}.source.output = {smu}.OUTPUT_ON",
        f"{smu}.trigger.source.listv({{{amplitude:.6g}}})",
        f"{smu}.trigger.source.action = {smu}.ENABLE",
        f"{smu}.trigger.measure.action = {smu}.DISABLE",
        f"{smu}.trigger.arm.count = 1",
        f"{smu}.trigger.arm.stimulus = 0",
        f"{smu}.trigger.source.stimulus = 0",
        f"{smu}.trigger.count = 1",
        f"{smu}.trigger.endpulse.action = {smu}.SOURCE_IDLE",
        f"{smu}.trigger.endsweep.action = {smu}.SOURCE_IDLE",
        f"{tmr}.count = 1",
        f"{tmr}.passthrough = false",
        f"{tmr}.delay = {width:.6g}",
        f"{tmr}.stimulus = {smu}.trigger.SOURCE_COMPLETE_EVENT_ID",
        f"{smu}.trigger.endpulse.stimulus = {tmr}.EVENT_ID",
        f"{smu}.trigger.initiate()",
        "waitcomplete()",
        "print(1)",
    ]
    return "; ".join(parts)


class SmuChannel(Channel):
    """One 2600B SMU channel (``smua`` / ``smub``) as a :class:`~instruments.roles.SourceChannel`."""

    source_voltage = Channel.control(
        "print(smu{ch}.source.levelv)", "smu{ch}.source.levelv = %g",
        """Control the DC voltage source level, V (smuX.source.levelv).""",
        validator=strict_range, values=VOLTAGE_RANGE,
    )
    compliance_current = Channel.control(
        "print(smu{ch}.source.limiti)", "smu{ch}.source.limiti = %g",
        """Control the current compliance limit, A (smuX.source.limiti).""",
        validator=strict_range, values=LIMIT_I_RANGE,
    )
    current_nplc = Channel.control(
        "print(smu{ch}.measure.nplc)", "smu{ch}.measure.nplc = %g",
        """Control the measurement integration time, power-line cycles (smuX.measure.nplc).""",
        validator=strict_range, values=NPLC_RANGE,
    )
    source_enabled = Channel.control(
        "print(smu{ch}.source.output)", "smu{ch}.source.output = smu{ch}.OUTPUT_%s",
        """Control the output state, True = on (smuX.source.output = smuX.OUTPUT_ON/OUTPUT_OFF;
        the query prints 1 for on, 0 for off, 2 for high-Z).""",
        validator=strict_discrete_set, values=(True, False),
        set_process=lambda v: "ON" if v else "OFF", get_process=lambda v: v == 1,
    )
    source_mode = Channel.control(
        "print(smu{ch}.source.func)", "smu{ch}.source.func = smu{ch}.OUTPUT_DC%s",
        """Control the source function, "voltage" or "current" (smuX.source.func =
        smuX.OUTPUT_DCVOLTS / OUTPUT_DCAMPS; the query prints 1 / 0).""",
        validator=strict_discrete_set, values=("voltage", "current"),
        set_process=lambda v: "VOLTS" if v == "voltage" else "AMPS",
        get_process=lambda v: "voltage" if v == 1 else "current",
    )
    output_off_mode = Channel.control(
        "print(smu{ch}.source.offmode)", "smu{ch}.source.offmode = smu{ch}.OUTPUT_%s",
        """Control what output off means: "normal" (0 V through the off current limit), "zero" or
        "high_z" (the output relay opens; 2600B reference manual, smuX.source.offmode; the query
        prints 0 / 1 / 2).""",
        validator=strict_discrete_set, values=("normal", "zero", "high_z"),
        set_process=lambda v: v.upper(), get_process=lambda v: {0: "normal", 1: "zero", 2: "high_z"}.get(v, v),
    )
    current_range_auto = Channel.setting(
        "smu{ch}.measure.autorangei = smu{ch}.AUTORANGE_%s",
        """Set current-measurement autoranging, True = on.""",
        validator=strict_discrete_set, values=(True, False),
        set_process=lambda v: "ON" if v else "OFF",
    )
    current = Channel.measurement(
        "print(smu{ch}.measure.i())",
        """Measure one current reading, A (positive = out of HI).""",
    )
    compliance_current_tripped = Channel.measurement(
        "print(smu{ch}.source.compliance)",
        """Get whether the source is in compliance (the instrument prints true / false).""",
        cast=str, get_process=_bool_reply,
    )

    def __init__(self, parent, id, **kwargs):
        super().__init__(parent, id, **kwargs)
        self.name = f"2600B smu{id}"

    # ------------------------------------------------------------------------ SourceChannel
    def setup(self, compliance: float, nplc: float) -> None:
        """Voltage source, autoranged current measurement, ``compliance`` (A), ``nplc``, level
        0 V; the output state is left as it is.  Both values are checked before anything is sent."""
        strict_range(compliance, LIMIT_I_RANGE)
        strict_range(nplc, NPLC_RANGE)
        self.source_mode = "voltage"
        self.source_voltage = 0
        self.compliance_current = compliance
        self.current_nplc = nplc
        self.current_range_auto = True
        self.output_off_mode = "high_z"     # off: disconnected, so a pulse generator may share the row

    def set_level(self, volts: float) -> None:
        self.source_voltage = volts

    def enable(self) -> None:
        self.source_enabled = True

    def disable(self) -> None:
        """Level 0 V, then output off."""
        self.source_voltage = 0
        self.source_enabled = False

    def output_enabled(self) -> bool:
        return self.source_enabled

    def measure_current(self) -> float:
        value = self.current
        if not isinstance(value, float):
            raise InstrumentError(f"{self.parent.name}: {self.name} current reading {value!r} is not a number")
        return value

    def pulse(self, amplitude: float, width: float) -> None:
        """One pulse 0 V -> ``amplitude`` (V) for ``width`` (s) -> 0 V through the trigger model
        (one line, see :func:`pulse_command`); the output is left on at 0 V.  Returns once the
        instrument has confirmed the end of the pulse (``waitcomplete()`` then ``print(1)``), so
        a switch matrix is never switched while the pulse is still on: one round trip."""
        if not (math.isfinite(amplitude) and math.isfinite(width)):
            raise ValueError("pulse amplitude and width must be finite")
        strict_range(amplitude, VOLTAGE_RANGE)
        strict_range(width, PULSE_WIDTH_RANGE)
        reply = self.parent.ask(pulse_command(self.id, float(amplitude), float(width))).strip()
        try:
            done = float(reply) == 1
        except ValueError:
            done = False
        if not done:
            raise InstrumentError(f"{self.parent.name}: {self.name} pulse not confirmed (reply {reply[:40]!r})")

    def compliance_tripped(self) -> bool:
        return self.compliance_current_tripped


class Keithley2600(TimeoutNamingMixin, ErrorQueueMixin, _PymeasureKeithley2600):
    """Keithley 2600B SourceMeter (2636B and relatives) over TSP.

    Args:
        resource: VISA resource (``TCPIP::host::5025::SOCKET``, GPIB, USB, ...), a serial port
            or pyserial URL, or a pymeasure adapter.
        name: instrument name used in error messages.
        timeout_ms: read timeout.
    """

    error_query = "print(errorqueue.next())"
    parse_error_reply = staticmethod(parse_tsp_error)

    MODEL_LIMITS = MODEL_LIMITS
    DEFAULT_MODEL = "2636B"

    smua = Instrument.ChannelCreator(SmuChannel, "a")
    smub = Instrument.ChannelCreator(SmuChannel, "b")

    def __init__(self, resource, name: str = "Keithley 2600B", timeout_ms: int = DEFAULT_TIMEOUT_MS, **kw):
        with warnings.catch_warnings():
            # pymeasure's driver declares SCPIUnknownMixin and warns about it on every instantiation
            warnings.filterwarnings("ignore", message="It is not known whether this device support SCPI",
                                    category=FutureWarning)
            super().__init__(adapter_for(resource, timeout_ms), name, **kw)
        self._wv_loaded = False

    def elapsed_time(self) -> float:
        """Seconds on the instrument's timer (``timer.measure.t()``: since ``timer.reset()`` or
        power-on; 2600B reference manual): the bench's time, one round trip."""
        reply = self.ask("print(timer.measure.t())").strip()
        try:
            return float(reply)
        except ValueError:
            raise InstrumentError(f"{self.name}: timer reading {reply[:40]!r} is not a number") from None

    # -------------------------------------------------------------------------- Identified
    def channel(self, which) -> SmuChannel:
        """``"a"``, ``"b"``, ``"smua"``, ``"smub"`` or one of this instrument's channels."""
        if isinstance(which, SmuChannel):
            if which.parent is not self:
                raise ValueError(f"{self.name}: {which.name} belongs to another instrument")
            return which
        key = str(which).lower().removeprefix("smu")
        if key == "a":
            return self.smua
        if key == "b":
            return self.smub
        raise ValueError(f"{self.name}: no SMU channel {which!r} (expected 'a'/'smua' or 'b'/'smub')")

    # ------------------------------------------------------------------------ write-verify
    def load_write_verify(self) -> None:
        """Send the packaged write-verify script as the named script ``xbarwv`` and run it once,
        which defines ``xbar_wv``; checks that the function exists (InstrumentError if not)."""
        self.write(f"loadscript {SCRIPT_NAME}")
        for line in script_lines():
            self.write(line)
        self.write("endscript")
        self.write(f"{SCRIPT_NAME}.run()")
        kind = self.ask(f"print(type({SCRIPT_FUNCTION}))").strip()
        if kind != "function":
            errors = self.drain_errors()
            raise InstrumentError(f"{self.name}: loading the write-verify script failed "
                                  f"(type({SCRIPT_FUNCTION}) = {kind[:30]!r}); errors: {errors}")
        self._wv_loaded = True

    def write_verify(self, channel, target: float, config=None, *, sense=None, bias=None,
                     timeout_s: float = 60.0) -> dict:
        """Tune the routed cell to ``target`` (S) on the instrument: ONE call line, ONE reply.

        Args:
            channel: the SMU driving the cell's row (``"a"``, ``"smub"``, ``inst.smua``, ...).
            target: conductance, S.
            config: write-verify settings — a dict with :data:`WRITE_VERIFY_DEFAULTS`' keys (any
                subset; the names of :class:`programming.tuner.TunerConfig`) or a TunerConfig.
            sense: the SMU holding the cell's column at 0 V and measuring the cell current;
                default ``channel`` itself (it sources and measures).
            bias: an SMU wired to every unselected line (column on ground, ``sense`` None): at
                V_read during reads, at half the amplitude during pulses (V/2 writes).
            timeout_s: read timeout for the reply (a tune takes up to ``max_pulses`` pulses).

        Returns:
            ``{"status": "converged"|"failed"|"stuck", "pulses": int, "reads": int,
            "final": float (S, the last reading), "trace": [(amplitude V, reading S), ...]}`` —
            one trace entry per read; amplitude is the signed pulse applied just before that
            read, 0.0 when none.
        """
        src = self.channel(channel)
        snk = src if sense is None else self.channel(sense)
        bia = None if bias is None else self.channel(bias)
        if bia is not None and (bia is src or bia is snk):
            raise ValueError("the bias SMU must differ from the source and sense SMUs")
        command = write_verify_command(src.id, snk.id, target, config, None if bia is None else bia.id)
        if not self._wv_loaded:
            self.load_write_verify()
        try:
            with self._timeout(timeout_s):
                reply = self.ask(command)
        except InstrumentTimeout as exc:
            errors = self.drain_errors()
            if errors:
                raise InstrumentError(f"{self.name}: write-verify failed: {errors}") from exc
            raise
        try:
            return parse_write_verify_reply(reply)
        except ValueError as exc:
            raise InstrumentError(f"{self.name}: cannot parse the write-verify reply: {exc}") from None

    # ------------------------------------------------------------- TSP-Link (a 707B as node[N])
    def tsplink_node_model(self, node: int) -> str:
        """Bring the TSP-Link network online if it is not (``print(tsplink.state)``; when
        ``offline``, ``print(tsplink.reset())``) and return the model of ``node[node]``
        (``print(node[N].model)``): 2-3 round trips, once per session.  InstrumentError when the
        network does not come online or the node does not answer."""
        node = _node_number(node)
        state = self.ask("print(tsplink.state)").strip()
        if state != "online":
            self.ask("print(tsplink.reset())")
            state = self.ask("print(tsplink.state)").strip()
        if state != "online":
            errors = self.drain_errors()
            raise InstrumentError(f"{self.name}: TSP-Link is {state[:20]!r} after tsplink.reset() (is the "
                                  f"matrix connected to the TSP-Link port and given node {node}?); errors: {errors}")
        model = self.ask(f"print(node[{node}].model)").strip()
        if not model or model == "nil":
            raise InstrumentError(f"{self.name}: no TSP-Link node {node}; errors: {self.drain_errors()}")
        return model

    def tune_cells(self, channel, sense, node: int, layout: dict, cells, targets, config=None,
                   timeout_s: float = 600.0, v3=None) -> list[dict]:
        """Tune a list of cells with the matrix at TSP-Link ``node[node]`` routing each one, the
        script's ``xbar_tune``: ONE call line, ONE reply for the whole list.

        ``layout`` holds the matrix channels
        (:meth:`~instruments.hardware_crossbar.HardwareCrossbar.tsplink_layout`): ``drive`` (the
        drive SMU's input to each row), ``sense`` (the sense SMU's input to each column),
        ``grow`` / ``gcol`` (ground to each row / column).  Reads: drive at V_read, sense at 0 V
        measures; writes: V/2 with shifted levels (sense at −V/2 while drive pulses +V/2), or V/3
        when ``config``'s ``write_scheme`` is ``"v/3"``: then ``v3`` = (address, port, channel,
        bcol) names the LAN source (a B2900 channel, reached over TSP-Net) that holds the
        unselected columns at +V/3 through the matrix channels ``bcol`` (its input to each column)
        while sense takes the selected column to −V/3 and drive pulses +2V/3.  ``cells`` are (row,
        col) pairs (0-based), ``targets`` their conductances (S), ``config`` as
        :meth:`write_verify`.  Returns one dict per cell as :meth:`write_verify` does."""
        src, bia = self.channel(channel), self.channel(sense)
        if src is bia:
            raise ValueError("the sense SMU must differ from the source SMU")
        cells = [(int(r), int(c)) for r, c in cells]
        targets = [float(t) for t in targets]
        if len(cells) != len(targets) or not cells:
            raise ValueError("tune_cells needs one target per cell, and at least one cell")
        settings = write_verify_arguments(targets[0], config)[1:]    # checked once; target per cell
        for t in targets:
            write_verify_settings(t, config)
        head = _cells_head(src.id, bia.id, node, layout, cells)
        args = ", ".join(f"{a:d}" if isinstance(a, int) else f"{a:.9g}" for a in settings)
        args += _v3_arguments(_as_dict(config).get("write_scheme", "v/2"), v3, len(layout["sense"]))
        reply = self._call(f"xbar_tune({head}, {_lua_table(targets)}, {args})", timeout_s)
        parts = reply.strip().split(";")
        if len(parts) != len(cells):
            raise InstrumentError(f"{self.name}: xbar_tune answered {len(parts)} cells for {len(cells)}")
        try:
            return [parse_write_verify_reply(part) for part in parts]
        except ValueError as exc:
            raise InstrumentError(f"{self.name}: cannot parse the xbar_tune reply: {exc}") from None

    def read_cells(self, channel, sense, node: int, layout: dict, cells, v_read: float, repeats: int = 1,
                   timeout_s: float = 120.0) -> list[float]:
        """Read a list of cells (each routed by the matrix at ``node[node]``, read ``repeats``
        times, the mean kept), the script's ``xbar_read``: ONE call, ONE reply.  Conductances, S."""
        src, bia = self.channel(channel), self.channel(sense)
        if src is bia:
            raise ValueError("the sense SMU must differ from the source SMU")
        cells = [(int(r), int(c)) for r, c in cells]
        v_read = float(v_read)
        if not (math.isfinite(v_read) and 0 < abs(v_read) <= VOLTAGE_RANGE[1]):
            raise ValueError(f"read voltage {v_read!r} V is not a usable level")
        if int(repeats) < 1 or not cells:
            raise ValueError("read_cells needs at least one cell and one read each")
        head = _cells_head(src.id, bia.id, node, layout, cells)
        reply = self._call(f"xbar_read({head}, {v_read:.9g}, {int(repeats):d})", timeout_s)
        try:
            values = [float(x) for x in reply.strip().split(",")]
        except ValueError:
            raise InstrumentError(f"{self.name}: cannot parse the xbar_read reply {reply[:60]!r}") from None
        if len(values) != len(cells):
            raise InstrumentError(f"{self.name}: xbar_read answered {len(values)} readings for {len(cells)} cells")
        return values

    def _call(self, command: str, timeout_s: float) -> str:
        """Send one call line of the loaded script and return its one reply line."""
        if not self._wv_loaded:
            self.load_write_verify()
        try:
            with self._timeout(timeout_s):
                return self.ask(command)
        except InstrumentTimeout as exc:
            errors = self.drain_errors()
            if errors:
                raise InstrumentError(f"{self.name}: {command.partition('(')[0]} failed: {errors}") from exc
            raise


def _as_dict(config) -> dict:
    if config is None:
        return {}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, dict):
        return dict(config)
    raise TypeError(f"write-verify config must be a dict or a TunerConfig, not {type(config).__name__}")


def write_verify_settings(target: float, config=None) -> dict:
    """Validated write-verify settings (defaults filled in); ValueError names the bad one."""
    given = _as_dict(config)
    for key in _HOST_ONLY_KEYS:
        if given.pop(key, 0.0):
            raise ValueError(f"write-verify setting {key}: the on-instrument loop cannot correct its reads for "
                             "IR drop; tune from the host (xbar tune) with a line estimate")
    unknown = set(given) - set(WRITE_VERIFY_DEFAULTS) - _IGNORED_KEYS
    if unknown:
        raise ValueError(f"unknown write-verify settings: {sorted(unknown)}")
    s = {k: given.get(k, v) for k, v in WRITE_VERIFY_DEFAULTS.items()}
    if s["v_read"] is None:
        s["v_read"] = WRITE_VERIFY_DEFAULTS["v_read"]

    def number(name, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"write-verify {name} must be a finite number, got {value!r}")
        return float(value)

    target = number("target", target)
    if target <= 0:
        raise ValueError(f"write-verify target must be a positive conductance (S), got {target!r}")
    for name in ("tolerance", "v_set_start", "v_reset_start", "v_step", "v_set_max", "v_reset_max",
                 "width", "width_max", "v_read", "reset_amplitude", "reset_width", "stuck_rel", "stuck_ramp"):
        s[name] = number(name, s[name])
        if s[name] <= 0:
            raise ValueError(f"write-verify {name} must be positive, got {s[name]!r}")
    for name in ("guard", "width_ramp"):
        s[name] = number(name, s[name])
    for name in ("consecutive", "max_pulses", "pulses_at_cap"):
        value = s[name]
        integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not integral:
            raise ValueError(f"write-verify {name} must be an integer, got {value!r}")
        s[name] = int(value)
        if s[name] < 1:
            raise ValueError(f"write-verify {name} must be >= 1, got {value!r}")
    if not 0 <= s["guard"] < 1:
        raise ValueError(f"write-verify guard is a fraction in [0, 1), got {s['guard']!r}")
    if s["tolerance"] >= 0.5:
        raise ValueError(f"write-verify tolerance is relative (0.01 = 1 %), got {s['tolerance']!r}")
    if s["width_ramp"] < 1:
        raise ValueError("write-verify width_ramp is a growth factor >= 1")
    if s["v_set_start"] > s["v_set_max"] or s["v_reset_start"] > s["v_reset_max"]:
        raise ValueError("write-verify start amplitudes must not exceed their caps")
    if s["width"] > s["width_max"]:
        raise ValueError("write-verify width must not exceed width_max")
    for name in ("v_set_max", "v_reset_max", "reset_amplitude", "v_read"):
        if s[name] > VOLTAGE_RANGE[1]:
            raise ValueError(f"write-verify {name}={s[name]} V is beyond the 2600B's {VOLTAGE_RANGE[1]:g} V")
    for name in ("width", "width_max", "reset_width"):
        if not WIDTH_RANGE[0] <= s[name] <= WIDTH_RANGE[1]:
            raise ValueError(f"write-verify {name}={s[name]} s is outside {WIDTH_RANGE}")
    s["initial_reset"] = bool(s["initial_reset"])
    s["target"] = target
    return s


def write_verify_arguments(target: float, config=None) -> list:
    """The numeric arguments of ``xbar_wv`` after (src, sense), in the script's order."""
    s = write_verify_settings(target, config)
    return [s["target"], s["tolerance"], s["guard"], s["consecutive"], s["v_set_start"],
            s["v_reset_start"], s["v_step"], s["v_set_max"], s["v_reset_max"], s["width"],
            s["width_ramp"], s["width_max"], s["v_read"], s["max_pulses"], s["pulses_at_cap"],
            s["stuck_rel"], s["stuck_ramp"], s["reset_amplitude"] if s["initial_reset"] else 0.0,
            s["reset_width"]]


def write_verify_command(src: str, sense: str, target: float, config=None, bias: str | None = None) -> str:
    """The one call line, e.g. ``xbar_wv(smua, smua, 0.0003, 0.01, ...)`` (``, smub`` appended
    when a bias SMU holds the unselected lines)."""
    args = ", ".join(f"{a:d}" if isinstance(a, int) else f"{a:.9g}" for a in write_verify_arguments(target, config))
    tail = f", smu{bias}" if bias is not None else ""
    return f"{SCRIPT_FUNCTION}(smu{src}, smu{sense}, {args}{tail})"


def _node_number(node) -> int:
    if isinstance(node, bool) or not isinstance(node, int) or not 1 <= node <= 64:
        raise ValueError(f"TSP-Link node numbers are 1 to 64, got {node!r}")
    return node


def _lua_table(values) -> str:
    """A flat Lua table literal of numbers or strings (channel names: letters and digits only)."""
    items = []
    for v in values:
        if isinstance(v, str):
            if not v.isalnum():
                raise ValueError(f"channel name {v!r} must be letters and digits")
            items.append(f'"{v}"')
        else:
            items.append(f"{v:d}" if isinstance(v, int) else f"{v:.9g}")
    return "{" + ",".join(items) + "}"


def _v3_arguments(scheme, v3, n_cols: int) -> str:
    """xbar_tune's optional V/3 arguments (``, "address", port, channel, {bcol...}``), or ``""``
    for V/2; ValueError for any other scheme, or V/3 without its source, or a source without V/3."""
    scheme = str(getattr(scheme, "value", scheme)).lower()
    if scheme not in ("v/2", "v/3"):
        raise ValueError(f"the on-instrument loop writes with V/2 or V/3, not {scheme!r}")
    if scheme == "v/2":
        if v3 is not None:
            raise ValueError("a V/3 bias source was given for a V/2 write")
        return ""
    if v3 is None:
        raise ValueError("V/3 on the instrument needs the unselected columns' source (v3=(address, port, "
                         "channel, matrix channels))")
    address, port, ch, bcol = v3
    if not (isinstance(address, str) and re.fullmatch(r"[A-Za-z0-9.\-]{1,253}", address)):
        raise ValueError(f"TSP-Net address {address!r} must be a host name or IP address")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"TSP-Net port {port!r} must be 1..65535")
    if isinstance(ch, bool) or not isinstance(ch, int) or not 1 <= ch <= 4:
        raise ValueError(f"bias source channel {ch!r} must be 1..4")
    if len(bcol) != n_cols:
        raise ValueError(f"{len(bcol)} bias channels for {n_cols} columns")
    return f', "{address}", {port:d}, {ch:d}, {_lua_table(bcol)}'


def _cells_head(src: str, sense: str, node: int, layout: dict, cells) -> str:
    """The common first arguments of xbar_tune / xbar_read: SMUs, node, the four channel tables
    and the cells' 1-based rows and columns."""
    node = _node_number(node)
    tables = [_lua_table(layout[k]) for k in ("drive", "sense", "grow", "gcol")]
    n_rows, n_cols = len(layout["drive"]), len(layout["sense"])
    for r, c in cells:
        if not (0 <= r < n_rows and 0 <= c < n_cols):
            raise ValueError(f"cell ({r}, {c}) is outside the {n_rows}x{n_cols} layout")
    return (f"smu{src}, smu{sense}, node[{node}], " + ", ".join(tables) + ", "
            + _lua_table([r + 1 for r, _ in cells]) + ", " + _lua_table([c + 1 for _, c in cells]))


def parse_write_verify_reply(reply: str) -> dict:
    """``status,pulses,reads,final,a1,g1,...`` -> dict (see :meth:`Keithley2600.write_verify`);
    ValueError if the line is malformed or inconsistent."""
    fields = [f.strip() for f in str(reply).strip().split(",")]
    if len(fields) < 6 or fields[0] not in WRITE_VERIFY_STATUSES:
        raise ValueError(f"unexpected reply {str(reply)[:80]!r}")
    pulses, reads = int(fields[1]), int(fields[2])
    final = float(fields[3])
    values = [float(f) for f in fields[4:]]
    if len(values) != 2 * reads:
        raise ValueError(f"{reads} reads announced, {len(values) / 2:g} (amplitude, reading) pairs received")
    trace = list(zip(values[0::2], values[1::2]))
    if sum(1 for a, _ in trace if a != 0) != pulses:
        raise ValueError(f"{pulses} pulses announced, the trace holds a different number")
    if trace[-1][1] != final:
        raise ValueError("the final reading differs from the last reading of the trace")
    return {"status": fields[0], "pulses": pulses, "reads": reads, "final": final, "trace": trace}
