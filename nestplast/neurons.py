"""Postsynaptic neuron models a rule can be compiled with: the NESTML models that ship with the
installed NESTML (``<venv>/models/neurons/``), used as they are, or, for a rule that reads
postsynaptic inputs (:data:`POST_INPUTS`), with three low-passed state variables added by a small
text transform (:meth:`Neuron.with_rule_inputs`). A neuron that can have it (:attr:`Neuron.drive_target`)
always carries its own Poisson drive, off until ``drive_rate`` is set (:func:`add_internal_drive`;
``network.drive = "internal"``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import UnknownNameError
from .nestml_text import declarations


class UnknownNeuronError(UnknownNameError):
    """An unknown neuron name; the message lists the available neurons."""


@dataclass(frozen=True)
class Neuron:
    """A NESTML neuron model: ``name`` is what users type, ``model`` the NESTML model name."""

    name: str
    model: str
    description: str
    # NEST's built-in model of the same neuron, and its parameter names that NESTML spells differently
    nest_model: str = ""
    renamed: tuple[tuple[str, str], ...] = ()
    # The excitatory and inhibitory input (NESTML expressions) that C_exc and C_inh low-pass, and its unit
    codependency: tuple[str, str, str] = ("I_syn_exc", "I_syn_inh", "pA")
    rule_inputs: bool = False  # with the state variables of POST_INPUTS (see with_rule_inputs)
    # The state variable that an excitatory spike of weight w raises by w: the internal drive's
    # (DRIVE_PARAMS, see add_internal_drive); None: this neuron has no internal drive
    drive_target: str | None = None
    # Its V_m equation has the form add_input_resistance rewrites (see there)
    input_resistance: bool = False
    # What NEST's own model refuses and NESTML's accepts, computing NaN or nonsense with it:
    # (parameter, NESTML invariant added to its declaration; see add_invariants)
    invariants: tuple[tuple[str, str], ...] = ()

    @property
    def path(self) -> Path:
        """The NESTML source, as installed with NESTML."""
        from .builder import nestml_model  # build imports this module

        return nestml_model("neurons", self.model)

    @property
    def source(self) -> str:
        text = self.path.read_text()
        if self.input_resistance:
            text = add_input_resistance(text)
        if self.rule_inputs:
            text = add_rule_inputs(text, self.codependency)
        text = add_invariants(text, self.invariants)
        return text if self.drive_target is None else add_internal_drive(text, self.drive_target)

    @property
    def parameters(self) -> tuple[str, ...]:
        """The names declared in the ``parameters`` block(s) of :attr:`source` (so with
        :meth:`with_rule_inputs` also the time constants of :data:`POST_INPUTS`)."""
        return tuple(declarations(self.source, "parameters"))

    def unknown_params(self, params) -> list[str]:
        """The keys of ``params`` (NEST's built-in names allowed, see :meth:`params_from_nest`)
        that are not parameters of this neuron: also its state variables (``V_m``) and what NEST
        adds to every paired neuron (``tau_minus``), which ``nest.Create`` and ``set`` take."""
        known, renamed = set(self.parameters), dict(self.renamed)
        return [key for key in params if renamed.get(key, key) not in known]

    def with_rule_inputs(self) -> Neuron:
        """This neuron with the state variables that rules read as postsynaptic inputs
        (:data:`POST_INPUTS`): ``V_bar`` (``V_m`` low-passed, ``tau_V_bar`` = 100 ms), ``C_exc`` and
        ``C_inh`` (the excitatory and inhibitory synaptic current of ``iaf_psc_exp``, conductance of
        ``iaf_cond_exp``, low-passed with ``tau_C_exc`` = 10 ms, ``tau_C_inh`` = 100 ms)."""
        return replace(self, rule_inputs=True)

    def params_from_nest(self, params: dict) -> dict:
        """Parameters of NEST's built-in model (e.g. ``tau_syn_ex``, ``t_ref``) under this
        NESTML neuron's names (``tau_syn_exc``, ``refr_T``), so an existing model keeps its values."""
        names = dict(self.renamed)
        return {names.get(key, key): value for key, value in params.items()}


# Postsynaptic state variables a rule can read (its synapse through a continuous port named
# ``<name>_post``); each low-passes a signal of the neuron: name -> (time-constant parameter, its default in ms).
POST_INPUTS = {"V_bar": ("tau_V_bar", 100.0), "C_exc": ("tau_C_exc", 10.0), "C_inh": ("tau_C_inh", 100.0)}


def add_rule_inputs(source: str, codependency: tuple[str, str, str]) -> str:
    """A NESTML neuron's ``source`` with the :data:`POST_INPUTS` state variables, each the low-pass
    of a signal: ``V_bar`` of ``V_m`` (starts at ``E_L``), ``C_exc`` and ``C_inh`` of the excitatory and
    inhibitory input (start at 0). Each step begins with ``X = s + (X - s) * exp(-h / tau_X)``, the
    exact solution over the step for the signal ``s`` held at its value at the start of the step
    (the value a multimeter recorded at the end of the step before): no ODE, so NESTML's exact
    integration of the neuron stays as it was (an ODE coupled to V_m made it use GSL). Declared
    in its state block, their time constants in its parameters block, their propagators in its
    internals, a signal that is an expression (a convolution) as an inline in its equations. The
    model keeps its name: the paired model's name (``<neuron>__with_<synapse>``) differs by the synapse."""
    exc, inh, unit = codependency
    signals = {"V_bar": ("V_m", "mV", "E_L"), "C_exc": (exc, unit, f"0 {unit}"), "C_inh": (inh, unit, f"0 {unit}")}
    inlines = {name: f"{name}_signal" for name, (signal, _u, _s) in signals.items() if not signal.isidentifier()}
    added = {
        "state": [f"{name} {u} = {start}    # nestplast: {signal} low-passed with {POST_INPUTS[name][0]}"
                  for name, (signal, u, start) in signals.items()],
        "equations": [f"inline {inlines[name]} {u} = {signal}    # nestplast: the signal {name} low-passes"
                      for name, (signal, u, _s) in signals.items() if name in inlines],
        "parameters": [f"{tau} ms = {default} ms    # nestplast: time constant of {name}"
                       for name, (tau, default) in POST_INPUTS.items()],
        "internals": [f"P_lowpass_{name} real = exp(-resolution() / {tau})    # nestplast: propagator of {name}"
                      for name, (tau, _d) in POST_INPUTS.items()],
        "update": ["# nestplast: the rule inputs, low-passed over this step from the values at its start"]
                  + [f"{name} = {inlines.get(name, signal)} + ({name} - {inlines.get(name, signal)}) * P_lowpass_{name}"
                     for name, (signal, _u, _s) in signals.items()],
    }
    for block, lines in added.items():
        if lines:
            source = add_to_block(source, block, lines, "add the rule inputs")
    return source


def add_to_block(source: str, block: str, lines: Sequence[str], task: str) -> str:
    """A NESTML model's ``source`` with ``lines`` added at the top of its one ``block:`` block
    (``parameters``, ``internals``, ...); ValueError "cannot {task}: ..." where it has not one."""
    head = re.compile(rf"^(    {block}:\n)", re.M)
    if len(head.findall(source)) != 1:
        raise ValueError(f"cannot {task}: the neuron has not exactly one '{block}:' block")
    text = "".join(f"        {line}\n" for line in lines)
    return head.sub(lambda m: m.group(1) + text, source)


# iaf_psc_exp's membrane equation: the synaptic currents and the constant inputs over C_m
MEMBRANE_EQUATION = re.compile(r"^(?P<indent>[ \t]+)V_m' = -\(V_m - E_L\) / tau_m \+ \((?P<synaptic>[^()]+?) \+ I_e \+ I_stim\) / C_m"
                               r"(?:[ \t]*#.*)?$", re.M)


def add_input_resistance(source: str) -> str:
    """A NESTML neuron's ``source`` with its constant inputs ``I_e`` and ``I_stim`` scaled by the
    internal ``R_m = tau_m / C_m``, computed once per parameter change, in its membrane equation
    ``V_m' = -(V_m - E_L) / tau_m + (synaptic + I_e + I_stim) / C_m``.

    NESTML's exact solution of that equation multiplies each constant input by ``P * tau_m /
    C_m`` (and subtracts it times ``tau_m / C_m``) in every step: four divisions per neuron and
    step, which the compiler cannot move out of the loop because the update calls into NEST.
    Written as ``(I_e + I_stim) * R_m / tau_m``, the same solution is ``I * R_m - I * R_m * P``:
    multiplications only (``benchmarks/drive.py``: an evaluation's ``nest.Simulate`` went from
    0.275 to 0.252 s). The solution is the same up to rounding."""
    if len(MEMBRANE_EQUATION.findall(source)) != 1:
        raise ValueError("cannot precompute the input resistance: the neuron has not exactly one "
                         "V_m' = -(V_m - E_L) / tau_m + (... + I_e + I_stim) / C_m")
    source = MEMBRANE_EQUATION.sub(
        lambda m: (f"{m['indent']}V_m' = -(V_m - E_L) / tau_m + ({m['synaptic']}) / C_m + (I_e + I_stim) * R_m / tau_m"
                   f"    # nestplast: (I_e + I_stim) / C_m with tau_m / C_m precomputed"), source)
    return add_to_block(source, "internals", ["R_m GOhm = tau_m / C_m    # nestplast: the input resistance"],
                        "precompute the input resistance")


def add_invariants(source: str, invariants: tuple[tuple[str, str], ...]) -> str:
    """A NESTML neuron's ``source`` with the invariant ``[[condition]]`` added to the declaration
    of each named parameter (one per declaration, as NESTML allows): NEST then refuses a setting
    that breaks it (BadProperty, quoting the condition) and keeps the values it had."""
    for name, condition in invariants:
        declaration = re.compile(rf"^([ \t]+{name} [^=\n]+=[^#\n\[]*?)([ \t]*(?:#.*)?)$", re.M)
        if len(declaration.findall(source)) != 1:
            raise ValueError(f"cannot add [[{condition}]]: the neuron has not exactly one declaration of {name}")
        source = declaration.sub(lambda m, condition=condition: f"{m.group(1)} [[{condition}]]{m.group(2)}", source)
    return source


# NESTML's exact solution of iaf_psc_exp divides by tau_m - tau_syn (ODE-toolbox warns "the propagator
# matrix is singular"): at tau_syn = tau_m V_m is NaN, within 1e-5 of it the PSP is off by 1e-5 to 1e-2;
# at a relative distance of 1e-3 by less than 1e-8. NEST's own iaf_psc_exp has a formula for equal ones.
def _apart_from_tau_m(tau: str) -> str:
    return f"{tau} > 0 ms and abs({tau} - tau_m) >= 0.001 * tau_m"


# The parameters of the internal drive (see add_internal_drive): name -> (unit, meaning).
DRIVE_PARAMS = {"drive_rate": ("Hz", "rate of the internal Poisson drive"),
                "drive_weight": ("pA", "weight of each of its events")}


# Below this mean count per step the drive is drawn by inversion (about 1 + mean comparisons),
# above it by NESTML's random_poisson (NEST's std::poisson_distribution).
DRIVE_INVERSION_BELOW = 10.0
# The inversion's first counts (P(0) ... P(DRIVE_UNROLLED), computed once per parameter change)
# are compared without a loop: a loop's exit after 0, 1 or 2 events cannot be predicted, and each
# of its steps divides. The same numbers in the same order: the same counts as the loop alone.
DRIVE_UNROLLED = 3


def add_internal_drive(source: str, target: str) -> str:
    """A NESTML neuron's ``source`` with an independent Poisson drive: at the end of every step's
    update, ``target`` (the excitatory synaptic current) grows by ``drive_weight`` times a
    Poisson count of mean ``drive_rate * resolution()``. That is what a ``poisson_generator``
    connected with ``drive_weight`` does: its events, delivered in a step, are added after that
    step's integration too (in NESTML's onReceive, run after the update block, and in NEST's
    ``iaf_psc_exp``). Only the generator's delay is missing, a constant shift of uncorrelated
    input that changes none of its statistics. At ``drive_rate = 0``, the default, the drive is
    off: one predictable comparison per step, and the neuron computes what it computes without it.

    The count is drawn by inversion: one uniform number u, and the smallest n whose cumulative
    Poisson probability (from ``exp(-mean)``, computed once per parameter change) reaches u.

    u comes from the neuron's own random state ``drive_rng``: Marsaglia's xorshift64 (shifts 13,
    7, 17; period 2^64 - 1), its top 53 bits. It is three shifts and xors inlined in the update,
    where a call to NEST's random stream (a virtual call into the kernel, then the Mersenne
    twister) made the drive cost 20.5 ns per neuron and step; it costs 3.7-4.5 ns now. The state is seeded from
    NEST's per-thread stream in the neuron's first driven step (``drive_rng = 0``, the default,
    means "not seeded"), so runs are reproducible by NEST's ``rng_seed``; setting ``drive_rng``
    fixes one neuron's stream. NESTML's integers are C++'s signed ``long``: the masks keep every
    shift a defined one, and make ``>>`` the unsigned shift the generator needs. xorshift64 is
    linear over GF(2), which batteries such as BigCrush detect in its bits; what the drive needs,
    counts with the Poisson distribution, uncorrelated in time and between neurons, is tested
    (``tests/test_drive.py``).

    NESTML's ``random_poisson`` builds NEST's distribution (an ``exp``) and draws about 1 + mean
    uniform numbers at every call: measured 33 ns per neuron and step, as much as the
    ``poisson_generator`` costs; this drive costs a small fraction (see ``benchmarks/drive.py``).
    Means of :data:`DRIVE_INVERSION_BELOW` or more (100 kHz at 0.1 ms), where inversion's loop
    grows long and ``exp(-mean)`` underflows, use ``random_poisson``."""
    added = {
        "state": ["drive_rng integer = 0    # nestplast: the drive's own random state (0: seed it from NEST's stream)"],
        # a negative rate or weight is refused (NEST's poisson_generator refuses a negative rate; a
        # negative weight would drive the excitatory current down, not the inhibitory one up)
        "parameters": [f"{name} {unit} = 0 {unit} [[{name} >= 0 {unit}]]    # nestplast: {meaning}"
                       for name, (unit, meaning) in DRIVE_PARAMS.items()],
        "internals": ["drive_2_53 real = 2.0 ** -53    # nestplast: scales 53 random bits to [0, 1)",
                      "drive_mean real = drive_rate * (resolution() / 1 s)    # nestplast: expected drive events per step",
                      "drive_p0 real = exp(-drive_mean)    # nestplast: probability of no drive event in a step"]
                     + [line for n in range(1, DRIVE_UNROLLED + 1) for line in (
                         f"drive_p{n} real = drive_p{n - 1} * (drive_mean / {n})    # nestplast: P(n = {n})",
                         f"drive_c{n} real = {'drive_p0' if n == 1 else f'drive_c{n - 1}'} + drive_p{n}    "
                         f"# nestplast: P(n <= {n})")],
    }
    for block, lines in added.items():
        source = add_to_block(source, block, lines, "add the internal drive")
    # the end of the update block: its last indented line before the next block (or the end)
    update = re.compile(r"^    update:\n(?:(?:        .*|\s*)\n)*?(?=    \S|\Z)", re.M)
    if len(update.findall(source + "\n")) != 1:
        raise ValueError("cannot add the internal drive: the neuron has not exactly one 'update:' block")
    lines = [
        "# nestplast: the internal drive, after this step's integration like a spike received in it (off at rate 0)",
        "if drive_mean > 0:",
        "    drive_n integer = 0",
        f"    if drive_mean < {DRIVE_INVERSION_BELOW}:",
        "        if drive_rng == 0:    # the first step: a seed of 53 bits from NEST's per-thread stream",
        "            drive_rng = random_uniform(1, 9007199254740992)",
        "        # xorshift64 (Marsaglia 2003, shifts 13, 7, 17); the masks keep each shift defined in C++",
        "        drive_rng = drive_rng ^ ((drive_rng & 2251799813685247) << 13)",
        "        drive_rng = drive_rng ^ ((drive_rng >> 7) & 144115188075855871)",
        "        drive_rng = drive_rng ^ ((drive_rng & 140737488355327) << 17)",
        "        drive_u real = ((drive_rng >> 11) & 9007199254740991) * drive_2_53    # its top 53 bits",
        "        # the first counts by comparisons (mostly conditional moves once compiled), the rest by the loop",
        *[line for n in range(1, DRIVE_UNROLLED + 1)
          for line in (f"        if drive_u > {'drive_p0' if n == 1 else f'drive_c{n - 1}'}:", f"            drive_n = {n}")],
        f"        if drive_u > drive_c{DRIVE_UNROLLED}:",
        f"            drive_p real = drive_p{DRIVE_UNROLLED}    # P(n) for the n reached",
        f"            drive_cdf real = drive_c{DRIVE_UNROLLED}    # P(0) + ... + P(n)",
        "            while drive_u > drive_cdf and drive_p > 0:    # (P(n) underflows at last: the loop ends)",
        "                drive_n += 1",
        "                drive_p *= drive_mean / drive_n",
        "                drive_cdf += drive_p",
        "    else:",
        "        drive_n = random_poisson(drive_mean)",
        f"    {target} += drive_weight * drive_n",
    ]
    text = "".join(f"        {line}\n" for line in lines)
    return update.sub(lambda m: m.group(0).rstrip("\n") + "\n" + text + "\n", source + "\n", count=1)


NEURONS = {
    n.name: n
    for n in (
        Neuron("iaf_psc_exp", "iaf_psc_exp_neuron",
               "current-based LIF, exponential synaptic currents (NEST's iaf_psc_exp; parameters "
               "tau_syn_exc, tau_syn_inh, refr_T)",
               nest_model="iaf_psc_exp",
               renamed=(("tau_syn_ex", "tau_syn_exc"), ("tau_syn_in", "tau_syn_inh"), ("t_ref", "refr_T")),
               drive_target="I_syn_exc", input_resistance=True,
               invariants=(("C_m", "C_m > 0 pF"), ("tau_m", "tau_m > 0 ms"), ("refr_T", "refr_T >= 0 ms"),
                           ("V_th", "V_reset < V_th"), ("tau_syn_exc", _apart_from_tau_m("tau_syn_exc")),
                           ("tau_syn_inh", _apart_from_tau_m("tau_syn_inh")))),
        Neuron("iaf_cond_exp", "iaf_cond_exp_neuron",
               "conductance-based LIF, exponential synaptic conductances (NEST's iaf_cond_exp; parameters "
               "tau_syn_exc, tau_syn_inh, refr_T, E_exc, E_inh)",
               nest_model="iaf_cond_exp",
               renamed=(("tau_syn_ex", "tau_syn_exc"), ("tau_syn_in", "tau_syn_inh"), ("t_ref", "refr_T"),
                        ("E_ex", "E_exc"), ("E_in", "E_inh")),
               codependency=("unit_psg * convolve(g_exc, exc_spikes)", "unit_psg * convolve(g_inh, inh_spikes)", "nS"),
               invariants=(("C_m", "C_m > 0 pF"), ("refr_T", "refr_T >= 0 ms"), ("V_th", "V_reset < V_th"),
                           ("tau_syn_exc", "tau_syn_exc > 0 ms"), ("tau_syn_inh", "tau_syn_inh > 0 ms"))),
    )
}


def get_neuron(name: str) -> Neuron:
    """The neuron called ``name``; NESTML's model name (``iaf_psc_exp_neuron``) is accepted too."""
    for neuron in NEURONS.values():
        if name in (neuron.name, neuron.model):
            return neuron
    raise UnknownNeuronError(f"unknown neuron {name!r}; available neurons: {', '.join(sorted(NEURONS))}")
