-- xbarlab: write-verify of one crossbar cell, run on a Keithley 2600B SourceMeter (TSP).
-- Lua 5.0 syntax (the 2600B's TSP): no '#' or '%' operators, table.insert / table.concat only.
--
-- Load it as a named script and run it once; running only defines the global function xbar_wv:
--   loadscript xbarwv  ...these lines...  endscript      then      xbarwv.run()
--
-- xbar_wv(src, sense, target, tol, guard, consecutive, vset0, vreset0, vstep, vsetmax, vresetmax,
--         width, width_ramp, width_max, vread, maxpulses, pulses_at_cap, stuck_rel, stuck_ramp,
--         reset_v, reset_width)
-- tunes the cell that the switch matrix has already routed: SMU `src` drives the cell's row for
-- reads and pulses; SMU `sense` holds the cell's column at 0 V and measures the cell current.
-- Pass the same SMU twice (src == sense, e.g. a two-terminal device on its own) to source and
-- measure on one channel.  A reading is G = I/vread (I = -sense current when sense is not src).
-- Optional last argument `bias`: an SMU wired to every unselected line (the selected column on
-- ground, src == sense on the row).  It sits at vread during reads - the row's other cells then
-- see 0 V, so src measures the selected cell alone - and at half the amplitude during pulses:
-- exact reads and V/2 writes with one 2600B.
-- Call the driver's channel setup (compliance, NPLC) first; outputs are left on at 0 V.
--
-- Algorithm (programming/tuner.py, one cell): an optional RESET pulse of -reset_v (reset_v = 0:
-- none); then read; inside target*(1 +- tol*(1 - guard)) count, and stop "converged" after
-- `consecutive` in-band reads in a row; otherwise pulse toward the target, SET (+) below, RESET (-)
-- above, amplitude from vset0 / vreset0 growing by vstep while the polarity repeats, capped at
-- vsetmax / vresetmax (at the cap the width grows by width_ramp up to width_max); give up
-- ("failed") after more than pulses_at_cap pulses at the cap or maxpulses pulses in all; "stuck"
-- when the readings never moved by more than stuck_rel although the amplitude ramped stuck_ramp
-- volts above its start.
--
-- A pulse is one point of the SMU trigger model: source list {amplitude}, the end-pulse event
-- comes from trigger timer 1 started by the source-complete event, after `width` seconds, and
-- the end-pulse action returns the output to its idle level, smuX.source.levelv = 0.
--
-- Prints ONE line:  status,pulses,reads,final_g,a1,g1,a2,g2,...
-- status = converged | failed | stuck; final_g = the last reading (S); gi = the i-th reading (S),
-- ai = the signed amplitude (V) of the pulse applied just before it (0 when none).

local function xbar_wv_pulse(src, amplitude, width)
  src.trigger.source.listv({amplitude})
  trigger.timer[1].delay = width
  src.trigger.initiate()
  waitcomplete()
end

local function xbar_wv_read(src, sense, vread, bias)
  if bias ~= nil then bias.source.levelv = vread end
  src.source.levelv = vread
  local i = sense.measure.i()
  src.source.levelv = 0
  if sense == src then
    return i / vread
  end
  return -i / vread
end

-- ------------------------------------------------ V/3: the unselected columns' source over TSP-Net
-- `v3` = {id = a tspnet.connect() connection to a LAN SCPI source (a B2902A channel), ch = its
-- channel}: it holds every unselected column.  Each command is confirmed by a query in the same
-- message (tspnet.execute with a format string waits for the reply), so a level is in place
-- before the script goes on.
local function xbar_v3_ask(v3, command)
  local value = tonumber(tspnet.execute(v3.id, command, "%d"))
  if value == nil then error("xbar: no reply from the bias source to " .. command) end
  return value
end

local function xbar_v3_level(v3, v)
  local got = xbar_v3_ask(v3, string.format(":SOUR%d:VOLT %.6f;:SOUR%d:VOLT?", v3.ch, v, v3.ch))
  if math.abs(got - v) > 1e-5 then error(string.format("xbar: the bias source holds %g V, not %g V", got, v)) end
end

local function xbar_v3_output(v3, on)
  local want, word = 0, "OFF"
  if on then want, word = 1, "ON" end
  xbar_v3_level(v3, 0)
  if xbar_v3_ask(v3, string.format(":OUTP%d %s;:OUTP%d?", v3.ch, word, v3.ch)) ~= want then
    error("xbar: the bias source's output is not " .. word)
  end
end

-- one write pulse of `a` volts across the cell:
-- * `v3` (V/3 with shifted levels; unselected rows on ground, unselected columns on the v3
--   source): sense takes the selected column to -a/3, then the v3 source the unselected columns
--   to +a/3 (confirmed), then src pulses the row to +2a/3; afterwards the v3 source and sense
--   return to 0 V.  Every state on the way puts at most |a|/3 across an unselected cell (the
--   pulse comes only when both held levels are confirmed, and ends before either returns) and
--   at most |a| across the selected one;
-- * `split` (V/2 with shifted levels): the sense SMU holds the column at -a/2 while src pulses
--   the row to +a/2 (every other line on ground: unselected cells see at most a/2, whatever
--   order the levels change in);
-- * else src pulses the row to `a` with the optional bias SMU at a/2 on every unselected line.
local function xbar_wv_fire(src, sense, bias, split, a, w, v3)
  if v3 ~= nil then
    sense.source.levelv = -a / 3
    xbar_v3_level(v3, a / 3)
    xbar_wv_pulse(src, 2 * a / 3, w)
    xbar_v3_level(v3, 0)
    sense.source.levelv = 0
  elseif split then
    sense.source.levelv = -a / 2
    xbar_wv_pulse(src, a / 2, w)
    sense.source.levelv = 0
  else
    if bias ~= nil then bias.source.levelv = a / 2 end
    xbar_wv_pulse(src, a, w)
  end
end

local function xbar_wv_loop(src, sense, target, tol, guard, consecutive, vset0, vreset0, vstep, vsetmax,
                            vresetmax, width0, width_ramp, width_max, vread, maxpulses, pulses_at_cap,
                            stuck_rel, stuck_ramp, reset_v, reset_width, bias, split, v3)
  local pulses, reads, band, at_cap, last_pol = 0, 0, 0, 0, 0
  local amp, width, applied, g = 0, width0, 0, 0
  local g_lo, g_hi, status = nil, nil, nil
  local trace = {}
  if reset_v > 0 then
    xbar_wv_fire(src, sense, bias, split, -reset_v, reset_width, v3)
    pulses = 1
    applied = -reset_v
  end
  while status == nil do
    g = xbar_wv_read(src, sense, vread, bias)
    reads = reads + 1
    table.insert(trace, string.format("%.5e,%.5e", applied, g))
    applied = 0
    if g_lo == nil or g < g_lo then g_lo = g end
    if g_hi == nil or g > g_hi then g_hi = g end
    if math.abs(g - target) <= tol * (1 - guard) * target then
      band = band + 1
      at_cap = 0
      if band >= consecutive then status = "converged" end
    else
      band = 0
      local pol, start, cap = 1, vset0, vsetmax
      if g >= target then
        pol, start, cap = -1, vreset0, vresetmax
      end
      local same = (pol == last_pol)
      if same then
        amp = math.min(amp + vstep, cap)
      else
        amp = start
      end
      if same and amp >= cap - 1e-12 then
        at_cap = at_cap + 1
        width = math.min(width * width_ramp, width_max)
      else
        at_cap = 0
        width = width0
      end
      if (g_hi - g_lo) <= stuck_rel * g_lo and amp >= start + stuck_ramp - 1e-9 then
        status = "stuck"
      elseif at_cap > pulses_at_cap or pulses >= maxpulses then
        status = "failed"
      else
        xbar_wv_fire(src, sense, bias, split, pol * amp, width, v3)
        pulses = pulses + 1
        last_pol = pol
        applied = pol * amp
      end
    end
  end
  if bias ~= nil then bias.source.levelv = 0 end
  return string.format("%s,%d,%d,%.5e,", status, pulses, reads, g) .. table.concat(trace, ",")
end

local function xbar_wv_outputs_on(src, sense, bias)
  src.source.func = src.OUTPUT_DCVOLTS
  src.source.levelv = 0
  src.source.output = src.OUTPUT_ON
  if sense ~= src then
    sense.source.func = sense.OUTPUT_DCVOLTS
    sense.source.levelv = 0
    sense.source.output = sense.OUTPUT_ON
  end
  if bias ~= nil then
    bias.source.func = bias.OUTPUT_DCVOLTS
    bias.source.levelv = 0
    bias.source.output = bias.OUTPUT_ON
  end
end

local function xbar_wv_trigger(src)
  src.trigger.arm.count = 1
  src.trigger.arm.stimulus = 0
  src.trigger.source.stimulus = 0
  src.trigger.count = 1
  src.trigger.source.action = src.ENABLE
  src.trigger.measure.action = src.DISABLE
  src.trigger.endpulse.action = src.SOURCE_IDLE
  src.trigger.endsweep.action = src.SOURCE_IDLE
  trigger.timer[1].count = 1
  trigger.timer[1].passthrough = false
  trigger.timer[1].stimulus = src.trigger.SOURCE_COMPLETE_EVENT_ID
  src.trigger.endpulse.stimulus = trigger.timer[1].EVENT_ID
end

function xbar_wv(src, sense, target, tol, guard, consecutive, vset0, vreset0, vstep, vsetmax,
                 vresetmax, width0, width_ramp, width_max, vread, maxpulses, pulses_at_cap,
                 stuck_rel, stuck_ramp, reset_v, reset_width, bias)
  xbar_wv_outputs_on(src, sense, bias)
  xbar_wv_trigger(src)
  print(xbar_wv_loop(src, sense, target, tol, guard, consecutive, vset0, vreset0, vstep, vsetmax,
                     vresetmax, width0, width_ramp, width_max, vread, maxpulses, pulses_at_cap,
                     stuck_rel, stuck_ramp, reset_v, reset_width, bias))
end

-- ------------------------------------------------------------------ the matrix over TSP-Link
-- With a switch matrix on the TSP-Link network (a 707B at node[N]; tsplink.reset() done and
-- tsplink.state "online"), the 2600B routes each cell itself: ONE call tunes (xbar_tune) or reads
-- (xbar_read) a whole list of cells and prints ONE line.  Routing: `src` on the cell's row
-- (drive[r], a channel of the matrix), `sense` on its column (sense[c]), every other row and
-- column on ground (grow[i], gcol[j]).  Reads: src at vread, sense at 0 V measures the cell's
-- current alone (grounded-unselected read).  Writes: V/2 with shifted levels (xbar_wv_fire).
-- V/3 (xbar_tune's optional last arguments): the unselected columns go to a LAN source's matrix
-- input instead (bcol[j]), which the script sets over TSP-Net (tspnet.connect/execute: 2600B
-- reference manual, TSP-Net); it sits at 0 V during reads.
-- Safety by construction: a relay changes only after every output is set to 0 V and off and the
-- instruments report them off; the closed channels are read back (getclose) before an output goes
-- on; at the end, and on any error, every output goes off (confirmed) and every relay opens
-- (confirmed: getclose("allslots") is nil), then the error is raised again.

local function xbar_off(src, sense, v3)
  src.source.levelv = 0
  sense.source.levelv = 0
  src.source.output = src.OUTPUT_OFF
  sense.source.output = sense.OUTPUT_OFF
  if src.source.output ~= src.OUTPUT_OFF or sense.source.output ~= sense.OUTPUT_OFF then
    error("xbar: an output is still on; no relay switched")
  end
  if v3 ~= nil then xbar_v3_output(v3, false) end
end

local function xbar_route(src, sense, matrix, drive, sensecol, grow, gcol, r, c, v3, bcol)
  local route = {drive[r], sensecol[c]}
  for i, ch in ipairs(grow) do
    if i ~= r then table.insert(route, ch) end
  end
  local cols = gcol
  if v3 ~= nil then cols = bcol end
  for j, ch in ipairs(cols) do
    if j ~= c then table.insert(route, ch) end
  end
  xbar_off(src, sense, v3)
  matrix.channel.exclusiveclose(table.concat(route, ","))
  local closed = matrix.channel.getclose("allslots")
  if closed == nil then error("xbar: no relay closed") end
  local have, n = ";" .. closed .. ";", 0
  for _, ch in ipairs(route) do
    if string.find(have, ";" .. ch .. ";", 1, true) == nil then error("xbar: relay " .. ch .. " did not close") end
    n = n + 1
  end
  local _, extra = string.gsub(closed, ";", ";")
  if extra + 1 ~= n then error("xbar: relays closed beyond the route") end
  xbar_wv_outputs_on(src, sense, nil)
  if v3 ~= nil then xbar_v3_output(v3, true) end
end

local function xbar_release(src, sense, matrix, v3)
  xbar_off(src, sense, v3)
  matrix.channel.open("allslots")
  if matrix.channel.getclose("allslots") ~= nil then error("xbar: relays still closed") end
end

local function xbar_cells(src, sense, matrix, body, v3)
  local ok, err = pcall(body)
  local safe, serr = pcall(function() xbar_release(src, sense, matrix, v3) end)
  if v3 ~= nil then pcall(function() tspnet.disconnect(v3.id) end) end
  if not ok then error(err, 0) end
  if not safe then error(serr, 0) end
end

-- xbar_tune(src, sense, matrix, drive, sensecol, grow, gcol, rows, cols, targets, tol, guard,
--           consecutive, vset0, vreset0, vstep, vsetmax, vresetmax, width, width_ramp, width_max,
--           vread, maxpulses, pulses_at_cap, stuck_rel, stuck_ramp, reset_v, reset_width
--           [, v3_address, v3_port, v3_channel, bcol])
-- tunes cell (rows[k], cols[k]) (1-based) to targets[k] for every k, with xbar_wv's loop, and
-- prints the results separated by ';' (each as xbar_wv prints it).  With the four optional
-- arguments the writes are V/3: channel v3_channel of the LAN SCPI source at v3_address:v3_port
-- (a B2902A; reached over TSP-Net) holds the unselected columns through the matrix channels bcol.
function xbar_tune(src, sense, matrix, drive, sensecol, grow, gcol, rows, cols, targets, tol, guard,
                   consecutive, vset0, vreset0, vstep, vsetmax, vresetmax, width0, width_ramp, width_max,
                   vread, maxpulses, pulses_at_cap, stuck_rel, stuck_ramp, reset_v, reset_width,
                   v3_address, v3_port, v3_channel, bcol)
  local out, v3 = {}, nil
  if v3_address ~= nil then
    local id = tspnet.connect(v3_address, v3_port, string.format(":SOUR%d:VOLT 0", v3_channel))
    if id == nil then error("xbar: tspnet.connect to the bias source " .. v3_address .. " failed") end
    v3 = {id = id, ch = v3_channel}
  end
  xbar_cells(src, sense, matrix, function()
    for k, r in ipairs(rows) do
      xbar_route(src, sense, matrix, drive, sensecol, grow, gcol, r, cols[k], v3, bcol)
      xbar_wv_trigger(src)
      table.insert(out, xbar_wv_loop(src, sense, targets[k], tol, guard, consecutive, vset0, vreset0, vstep,
                                     vsetmax, vresetmax, width0, width_ramp, width_max, vread, maxpulses,
                                     pulses_at_cap, stuck_rel, stuck_ramp, reset_v, reset_width, nil, true, v3))
    end
  end, v3)
  print(table.concat(out, ";"))
end

-- xbar_read(src, sense, matrix, drive, sensecol, grow, gcol, rows, cols, vread, repeats) reads
-- every cell `repeats` times and prints the mean readings (S), comma-separated, in the order given.
function xbar_read(src, sense, matrix, drive, sensecol, grow, gcol, rows, cols, vread, repeats)
  local out = {}
  xbar_cells(src, sense, matrix, function()
    for k, r in ipairs(rows) do
      xbar_route(src, sense, matrix, drive, sensecol, grow, gcol, r, cols[k])
      local sum = 0
      for i = 1, repeats do
        sum = sum + xbar_wv_read(src, sense, vread, nil)
      end
      table.insert(out, string.format("%.5e", sum / repeats))
    end
  end)
  print(table.concat(out, ","))
end
