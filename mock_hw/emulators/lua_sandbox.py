"""A sandboxed Lua for emulated TSP instruments: the scripts a driver loads run as real Lua.

A Keithley 2600B runs the TSP scripts it is sent (Lua 5.0 on the instrument; the packaged
scripts keep to the subset Lua 5.0 and 5.4 share).  The emulator runs them in a Lua 5.4 from
``lupa`` with:

* an environment of the standard functions a TSP script uses and nothing else: ``math``,
  ``string`` (without ``dump``), ``table``, ``pairs``, ``ipairs``, ``next``, ``type``, ``tonumber``,
  ``tostring``, ``pcall``, ``error``, ``assert``, ``select``, ``unpack`` and what the instrument
  adds (its SMUs, ``print``, ...).  No ``os``, ``io``, ``load``, ``loadstring``, ``dofile``,
  ``require``, ``package``, ``debug``, ``collectgarbage``, ``getmetatable`` / ``setmetatable``,
  ``rawset`` / ``rawget``, ``coroutine``;
* Python objects reach Lua only as functions the emulator hands over; Lua cannot read or set any
  attribute of a Python object (lupa's ``attribute_filter`` refuses every one);
* a memory bound (:data:`MAX_MEMORY` bytes for the whole Lua state) and an instruction budget per
  call (:data:`MAX_INSTRUCTIONS`): a script that loops or allocates without bound is stopped with
  :class:`LuaStopped`, and the runtime stays usable.
"""
from __future__ import annotations

#: bytes the Lua state may hold in all (a 2600B has a few MB of script memory)
MAX_MEMORY = 16 * 2 ** 20
#: VM instructions one script call may execute (a 64-cell tune takes a few million)
MAX_INSTRUCTIONS = 200_000_000
#: the instruction hook runs every this many instructions
HOOK_EVERY = 1000

_PRIVILEGED = """
local sethook, load, pcall, error = debug.sethook, load, pcall, error
local st = {n = 0, max = 0, armed = false}
local function over()
  if st.armed then error("execution aborted: the script exceeded its instruction budget", 0) end
end
local function tick()
  if not st.armed then return end
  st.n = st.n + 1
  if st.n > st.max then sethook(over, "", 1); over() end
end
local function arm(max)
  sethook(tick, "", %d)
  st.n = 0; st.max = max; st.armed = true
end
local function compile(text, name, env)
  local f, e = load(text, "=" .. name, "t", env)
  if not f then error(e, 0) end
  return f
end
local env = {
  math = math, table = table, pairs = pairs, ipairs = ipairs, next = next, type = type,
  tonumber = tonumber, tostring = tostring, pcall = pcall, error = error, assert = assert,
  select = select, unpack = table.unpack,
}
local s = {}
for k, v in pairs(string) do if k ~= "dump" then s[k] = v end end
env.string = s
string.dump = nil
return arm, st, compile, env
""" % HOOK_EVERY


class LuaStopped(Exception):
    """A script stopped by the sandbox (instruction budget or memory) or by a Lua error; the
    message is what the instrument reports."""


def _deny(obj, name, setting):
    raise AttributeError("Lua may not access attributes of Python objects")


class LuaSandbox:
    """One Lua state; :meth:`run` executes script text, :meth:`call` a function it defined."""

    def __init__(self, max_memory: int = MAX_MEMORY, max_instructions: int = MAX_INSTRUCTIONS):
        from lupa import lua54

        self._lupa = lua54
        self.max_instructions = int(max_instructions)
        self.runtime = lua54.LuaRuntime(max_memory=int(max_memory), register_eval=False, register_builtins=False,
                                        attribute_filter=_deny, unpack_returned_tuples=True)
        self._arm, self._state, self._compile, self.env = self.runtime.execute(_PRIVILEGED)
        # the privileged globals are not reachable from the sandbox's environment
        for name in ("debug", "load", "loadstring", "dofile", "loadfile", "require", "package", "os", "io",
                     "collectgarbage"):
            self.runtime.globals()[name] = None

    def table(self, values) -> object:
        """A Lua table (array part) of ``values`` (numbers, strings or tables made by this method)."""
        return self.runtime.table_from(list(values))

    def lua_function(self, text: str):
        """A Lua function from trusted text (the emulator's own bindings), run in the sandbox's
        environment."""
        return self._guard(lambda: self._compile(f"return {text}", "binding", self.env)())

    def run(self, text: str, name: str = "script"):
        """Compile and run a chunk in the sandbox (its globals land in :attr:`env`)."""
        return self._guard(lambda: self._compile(text, name, self.env)())

    def call(self, function, *args):
        return self._guard(lambda: function(*args))

    def _guard(self, fn):
        self._arm(self.max_instructions // HOOK_EVERY)
        try:
            return fn()
        except self._lupa.LuaMemoryError:
            raise LuaStopped("not enough memory") from None
        except self._lupa.LuaError as exc:
            raise LuaStopped(str(exc).splitlines()[0] if str(exc) else "Lua error") from None
        finally:
            self._state.armed = False
