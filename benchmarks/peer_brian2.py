"""nestplast (NEST) beside Brian2 on the same network: wall time per evaluation and per search.

The network is the default experiment's (nestplast/experiments/default.toml), built in Brian2
from the same numbers: N_E + N_I ``iaf_psc_exp`` neurons (C_m 250 pF, E_L = V_reset = -70 mV,
V_th = -55 mV, tau_m, t_ref (+ dt in Brian2: see brian2_network), tau_syn_ex/in as in the experiment; exact integration, dt 0.1 ms),
fixed in-degree p x N_source per connection type (sources drawn with replacement, no autapses, as
NEST's fixed_indegree), current-based exponential synapses with the experiment's weights and
delay, an independent Poisson drive into every neuron (Brian2: a Poisson number of input spikes
with mean rate x dt every step, ``poisson()`` in a named ``run_regularly``: NEST's
poisson_generator exactly; ``PoissonInput`` cannot be named and made Cython compile anew for every
network), and
the doublet rule on I->E with Vogels-Sprekeler coefficients (``nestplast.rules.vogels_sprekeler``;
at a pre spike |w| += eta (alpha + kappa x_post), at a post spike |w| += eta (beta + gamma x_pre),
clipped to [0, w_max]; traces jump by 1, decay with tau). Every Brian2 object is named, so that
Brian2's Cython cache serves every network after the first.

Measured, one evaluation = build the network + simulate (one core):
- nestplast: ``Evaluator(...)(task)``, the search's own evaluation (chunks, rate checks,
  measurement), with the drive from NEST's ``poisson_generator`` and with ``network.drive =
  'internal'`` (drawn inside each neuron);
- Brian2 runtime (Cython): build + ``run``, the code cached (the first build's compile apart);
- Brian2 C++ standalone: one build, then the binary run with the rule's coefficients and eta as
  run-time arguments (``device.run(run_args=...)``); the build (code generation and compiling)
  is timed apart. The Poisson rate is compiled in, so every trial (another input rate) is a
  rebuild.

- NEST's own models: the same network from NEST's hand-written ``iaf_psc_exp``,
  ``poisson_generator`` and ``vogels_sprekeler_synapse`` (equal to the doublet rule with these
  coefficients), built and simulated with nothing measured: what a NEST user gets without nestplast;
- NEST's floor: the network's built-in neurons updated alone (no input, no synapses, the
  evaluation's time slice) over the evaluation's simulated time: no evaluation in NEST costs less.

Rates (E and I, the last second) are printed for both simulators, with the rule (eta = 1) and with
the synapses frozen (eta = 0, static weights): they must agree within their trial-to-trial spread.
A whole default search (12 generations x (8 + mean) x 2 trials = 216 evaluations on 24 distinct
trials) is estimated from these: nestplast 216 evaluations; Brian2 runtime 216 evaluations + the
first compile; Brian2 C++ one build, 23 rebuilds (another input rate: only what changed is
compiled again) and 216 runs (early aborts left out for all).
The large size has N_E = 4096, N_I = 1024 with the default's in-degrees (40 E and 10 I sources per
neuron, the same activity), simulated for ``--large-seconds`` on this shared machine.

Brian2 is a benchmark-only extra: ``.venv/bin/pip install -e '.[peer]'``; the standalone mode
needs a C++ compiler, the runtime mode Cython. Brian2 works with NumPy 2 from 2.10 on, which needs
Python >= 3.12; with nestplast on Python 3.11, give Brian2 its own environment (the Brian2 runs
are subprocesses that import no nestplast):

    python3.13 -m venv ../peer-venv && ../peer-venv/bin/pip install brian2 cython
    .venv/bin/python benchmarks/peer_brian2.py --brian2-python ../peer-venv/bin/python

    .venv/bin/python benchmarks/peer_brian2.py [--repeats 3] [--large-seconds 2] [--sizes default large]
                                               [--paired ROUNDS]

``--paired ROUNDS`` then times one nestplast evaluation (the neuron's own drive) and one run of the
Brian2 C++ binary alternately, ROUNDS times, and prints each pair's ratio: on a shared machine,
whose speed drifts over minutes, that compares the two better than medians taken minutes apart
(``--repeats 0`` skips the table).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import stopping

SEARCH_EVALUATIONS, SEARCH_TRIALS = 216, 24


@dataclasses.dataclass(frozen=True)
class Size:
    n_e: int
    n_i: int
    seconds: float  # simulated; the last second is where rates are measured

    @property
    def label(self) -> str:
        return f"{self.n_e} E + {self.n_i} I, {self.seconds:g} s"


def indegrees() -> dict[str, int]:
    """The default experiment's in-degrees (p x N of its 200 E + 50 I), kept at every size."""
    from nestplast import experiment

    net = experiment.default().network
    return {"EE": round(net.p * net.n_e), "EI": round(net.p * net.n_e), "IE": round(net.p * net.n_i),
            "II": round(net.p * net.n_i)}


def experiment_for(size: Size):
    """The default experiment at ``size`` (in-degrees kept), simulated for ``size.seconds``."""
    from nestplast import experiment

    exp = experiment.default()
    p = indegrees()["EE"] / size.n_e
    net = dataclasses.replace(exp.network, n_e=size.n_e, n_i=size.n_i, p=p)
    objective = dataclasses.replace(exp.objective, t_train=size.seconds - 1.0, t_score=1.0)
    return dataclasses.replace(exp, network=net, objective=objective)


def vs_theta(exp) -> list[float]:
    from nestplast.rules import vogels_sprekeler

    coefficients = vogels_sprekeler(exp.objective.target_rate, 20.0)
    return [coefficients[name.split(".", 1)[1]] for name in exp.layout().names]


# ---------------------------------------------------------------------------- nestplast


def clocks() -> tuple[float, float]:
    """Wall time and CPU time (this process and its finished children: compilers, the standalone
    binary). On a shared machine the CPU time is the steadier figure."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), time.process_time() + children.ru_utime + children.ru_stime


def since(start: tuple[float, float]) -> tuple[float, float]:
    now = clocks()
    return now[0] - start[0], now[1] - start[1]


def simulate_rates(nest, net, seconds: float) -> dict[str, float]:
    """Simulate a built NEST network for ``seconds``; each population's rate (Hz) in the last second."""
    nest.Simulate(1000.0 * (seconds - 1.0))
    counts = {name: r.n_events for name, r in net.recorders.items()}
    nest.Simulate(1000.0)
    return {name: (r.n_events - counts[name]) / len(net.populations[name]) for name, r in net.recorders.items()}


def nestplast_evaluator(size: Size, drive: str):
    """nestplast's own evaluation of the network at ``size`` with ``drive`` (the network's
    ``drive``; ``internal``: drawn inside each neuron): the experiment, module, evaluator, rule."""
    from nestplast.builder import build
    from nestplast.evaluate import Evaluator

    exp = experiment_for(size)
    exp = dataclasses.replace(exp, network=dataclasses.replace(exp.network, drive=drive))
    module = build(exp.module_rules(), exp.rule.neuron, quiet=True)
    return exp, module, Evaluator(exp, module), vs_theta(exp)


def timed_evaluation(evaluator, theta: list[float], seed: int):
    """One evaluation as the search runs it: ((wall, CPU) seconds, the evaluation)."""
    from nestplast.networks import Trial
    from nestplast.tasks import Task

    start = clocks()
    evaluation = evaluator(Task(0, 0, Trial(0, seed), tuple(theta)))
    elapsed = since(start)
    if evaluation.status != "ok":
        raise SystemExit(f"nestplast evaluation: {evaluation.status} {evaluation.error}")
    return elapsed, evaluation


def nest_side(size: Size, repeats: int, drive: str = "poisson_generator") -> dict:
    """nestplast's own evaluation, and the rates with frozen weights (eta = 0)."""
    from nestplast.networks import Trial, build_network

    exp, module, evaluator, theta = nestplast_evaluator(size, drive)
    timed_evaluation(evaluator, theta, 1000)  # NEST's first Install and caches
    times, rates = [], []
    for k in range(1, repeats + 1):
        elapsed, evaluation = timed_evaluation(evaluator, theta, 1000 + k)
        times.append(elapsed)
        rates.append(evaluation.metrics["rate_e"])
    frozen = []
    for k in range(repeats):
        nest = evaluator.setup_kernel(1000 + k)
        params = {ct: {**p, "eta": 0.0} for ct, p in evaluator.synapse_params(theta).items()}
        models = {ct: module.synapse_models[evaluator.layout.rule_of(ct).name] for ct in params}
        net = build_network(nest, exp.network, module, params, Trial(0, 1000 + k), models=models)
        frozen.append(simulate_rates(nest, net, size.seconds))
    return {"eval": times, "rate_e": rates, "frozen_e": [f["E"] for f in frozen], "frozen_i": [f["I"] for f in frozen]}


def paired(size: Size, rounds: int, python: str, drive: str = "internal") -> None:
    """One nestplast evaluation, then one run of Brian2 C++'s binary (built once), ``rounds``
    times. A shared machine's speed drifts over minutes, and the two runs of a pair share the
    drift: prints each pair's ratio (Brian2 C++ CPU / nestplast CPU) and their median."""
    _, _, evaluator, theta = nestplast_evaluator(size, drive)
    timed_evaluation(evaluator, theta, 1000)  # NEST's first Install and caches
    ratios = []
    print(f"\n{size.label}, paired: nestplast ({drive}) and Brian2 C++ standalone alternately, one core "
          f"(load {os.getloadavg()[0]:.2f})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        in_subprocess(python, "standalone", size, 1, tmp)  # the build, once
        for k in range(rounds):
            (_, ours), _ = timed_evaluation(evaluator, theta, 1001 + k)
            (_, theirs), = in_subprocess(python, "standalone", size, 1, tmp)["eval"]
            ratios.append(theirs / ours)
            print(f"    pair {k + 1}: nestplast {ours:.3f} s, Brian2 C++ {theirs:.3f} s (CPU), ratio {ratios[-1]:.2f}",
                  flush=True)
    print(f"  one evaluation, Brian2 C++ / nestplast ({drive}), CPU: median of {rounds} pairs "
          f"{statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f}; goal >= 1)")


def nest_builtin_side(size: Size, repeats: int) -> dict:
    """The same network from NEST's own hand-written models (``iaf_psc_exp``, ``poisson_generator``,
    ``vogels_sprekeler_synapse`` on I->E with the same rule), built and simulated, no measurement:
    what a NEST user gets without nestplast."""
    from drive import builtin_network

    from nestplast.kernel import import_nest

    exp = experiment_for(size)
    vs = vogels_sprekeler_nest(exp)
    nest = import_nest()

    def run(seed: int, eta: float) -> tuple[tuple[float, float], dict]:
        start = clocks()
        nest.ResetKernel()
        nest.SetKernelStatus({"resolution": exp.network.resolution, "rng_seed": seed})
        net = builtin_network(nest, exp.network, ("vogels_sprekeler_synapse", {**vs, "eta": eta}))
        rates = simulate_rates(nest, net, size.seconds)
        return since(start), rates

    times, rates, frozen = [], [], []
    for k in range(repeats + 1):  # the first: caches
        elapsed, r = run(1000 + k, vs["eta"])
        if k:
            times.append(elapsed)
            rates.append(r["E"])
    for k in range(repeats):
        frozen.append(run(1000 + k, 0.0)[1])
    return {"eval": times, "rate_e": rates, "frozen_e": [f["E"] for f in frozen], "frozen_i": [f["I"] for f in frozen]}


def vogels_sprekeler_nest(exp) -> dict:
    """NEST's ``vogels_sprekeler_synapse`` settings equal to the doublet rule with
    Vogels-Sprekeler coefficients and the experiment's eta (1) and I->E bound (see
    tests/test_rule_agreement.py, which checks that the two agree)."""
    from nestplast.rules import vogels_sprekeler

    coefficients = vogels_sprekeler(exp.objective.target_rate, 20.0)
    return {"tau": coefficients["tau_pre"], "alpha": -coefficients["alpha"], "eta": 1.0,
            "Wmax": -exp.network.w_max["IE"]}


def nest_floor(size: Size, repeats: int) -> list[tuple[float, float]]:
    """What NEST spends updating the network's neurons alone: built-in ``iaf_psc_exp``, no input,
    no synapses, never firing, over the evaluation's simulated time with its time slice (the
    synaptic delay). A lower bound on any evaluation that NEST simulates."""
    from nestplast.kernel import import_nest

    exp = experiment_for(size)
    nest = import_nest()
    times = []
    for _ in range(repeats + 1):
        nest.ResetKernel()
        nest.SetKernelStatus({"resolution": exp.network.resolution, "min_delay": exp.network.delay,
                              "max_delay": exp.network.delay})
        nest.Create("iaf_psc_exp", size.n_e + size.n_i, params=exp.network.neuron_params)
        start = clocks()
        nest.Simulate(1000.0 * size.seconds)
        times.append(since(start))
    return times[1:]


# ---------------------------------------------------------------------------- Brian2

def peer_params() -> dict:
    """The default experiment's numbers the Brian2 network needs (the worker imports no nestplast:
    it may run in another environment)."""
    from nestplast import experiment
    from nestplast.rules import vogels_sprekeler

    spec = experiment.default().network
    return {"neuron": spec.neuron_params, "weights": spec.weights, "delay_ms": spec.delay,
            "input_rate": spec.input_rate, "input_weight": spec.input_weight, "w_max_ie": spec.w_max["IE"],
            "vs": vogels_sprekeler(10.0, 20.0), "indegrees": indegrees()}


# nestplast's early stop (evaluate.Evaluator.simulate, objectives.RateBand) in C++ for Brian2's
# standalone binary: after each chunk the E rate of the chunk, low-passed; once it leaves the band
# the binary ends as a finished run does (brian_end() writes the results), the Brian2 maintainers'
# recipe for stopping a standalone run, and leaves the time in the file stopped_at.
BAND_CPP = """
double nestplast_band(const double t)
{
    static long last = 0;
    static double low_passed = %(start)r;
    if (t < 1e-9)
        return 0.0;  // run_regularly's first call, at the start
    const long n = brian::_array_spikes_E_N[0];
    const double rate = (n - last) / (%(n_e)d * %(chunk)r);
    last = n;
    low_passed = %(a)r * rate + (1.0 - %(a)r) * low_passed;
    if (!(low_passed >= %(low)r && low_passed <= %(high)r))
    {
        FILE* f = fopen("stopped_at", "w");
        if (f) { fprintf(f, "%%.17g\\n", t); fclose(f); }
        brian_end();
        std::exit(0);
    }
    return 0.0;
}
"""


def band_stop(b2, stop: dict, n_e: int) -> list:
    """Brian2 objects that end the standalone binary as nestplast's evaluation stops early
    (``stop``: low, high, tau_s, start, chunk_s of its rate band)."""
    from brian2 import check_units, implementation, second

    b2.prefs.codegen.cpp.headers += ['"run.h"']  # brian_end()
    code = BAND_CPP % {"start": float(stop["start"]), "n_e": n_e, "chunk": float(stop["chunk_s"]),
                       "a": -float(np.expm1(-stop["chunk_s"] / stop["tau_s"])), "low": float(stop["low"]),
                       "high": float(stop["high"])}

    @implementation("cpp", code)
    @check_units(t=second, result=1)
    def nestplast_band(t):
        raise NotImplementedError("C++ standalone only")

    checker = b2.NeuronGroup(1, "unused : 1", name="band_checker", namespace={"nestplast_band": nestplast_band})
    check = checker.run_regularly("unused = nestplast_band(t)", dt=stop["chunk_s"] * second, when="end",
                                  name="band_check")
    return [checker, check]


def brian2_network(params: dict, size: Size, seed: int, stop: dict | None = None):
    """The network in Brian2 (the current device): (Network, groups, the I->E synapses, monitors);
    with ``stop`` (standalone only), stopped early as nestplast's evaluation (see band_stop)."""
    import brian2 as b2
    from brian2 import Hz, ms, mV, pA, pF

    neuron = params["neuron"]
    namespace = {"C_m": 250 * pF, "E_L": -70 * mV, "V_reset": -70 * mV, "V_th": -55 * mV,
                 "tau_m": neuron["tau_m"] * ms, "tau_exc": neuron["tau_syn_ex"] * ms,
                 "tau_inh": neuron["tau_syn_in"] * ms, "w_in": params["input_weight"] * pA,
                 "lam": params["input_rate"] * Hz * b2.defaultclock.dt}
    eqs = """
    dv/dt = -(v - E_L) / tau_m + (I_exc - I_inh) / C_m : volt (unless refractory)
    dI_exc/dt = -I_exc / tau_exc : amp
    dI_inh/dt = -I_inh / tau_inh : amp
    """
    groups = {}
    # Brian2 integrates a neuron again in the step where t - lastspike reaches its refractory
    # period; NEST's iaf_psc_exp holds V_m for t_ref / dt whole steps after the step of the spike,
    # one step more. Brian2 is given t_ref + dt, so that both hold V_m equally long (checked: with
    # t_ref alone the frozen network fired at 163 Hz in Brian2 against 160.5 Hz in NEST).
    refractory = neuron["t_ref"] * ms + b2.defaultclock.dt
    for name, n in (("E", size.n_e), ("I", size.n_i)):
        g = b2.NeuronGroup(n, eqs, threshold="v >= V_th", reset="v = V_reset", refractory=refractory,
                           method="exact", namespace=namespace, name=f"group_{name}")
        g.v = -70 * mV
        groups[name] = g
    rng = np.random.default_rng(seed)
    objects = list(groups.values())
    # The drive: a Poisson number of input spikes every step (lam = rate x dt, in the neurons'
    # namespace), as NEST's poisson_generator sends them. (PoissonInput takes no name: each new
    # network got a new one, and Cython compiled it again.)
    for name, g in groups.items():
        objects.append(g.run_regularly("I_exc += w_in * poisson(lam)", when="synapses", name=f"drive_{name}"))
    vs, delay = params["vs"], params["delay_ms"] * ms
    plastic = None
    for ct in ("EE", "EI", "IE", "II"):
        source, target = groups[ct[0]], groups[ct[1]]
        j = np.repeat(np.arange(len(target)), params["indegrees"][ct])
        i = rng.integers(0, len(source) - (ct[0] == ct[1]), size=j.size)
        if ct[0] == ct[1]:
            i = i + (i >= j)  # no autapses: skip the target itself
        current = "I_inh_post" if ct[0] == "I" else "I_exc_post"
        if ct == "IE":
            # Brian2 reserves the suffixes _pre and _post: traces xpre, xpost, time constants taupre, taupost
            s = b2.Synapses(source, target, model="""
                w : 1
                alpha : 1 (shared, constant)
                beta : 1 (shared, constant)
                gamma : 1 (shared, constant)
                kappa : 1 (shared, constant)
                eta : 1 (shared, constant)
                w_max : 1 (shared, constant)
                taupre : second (shared, constant)
                taupost : second (shared, constant)
                dxpre/dt = -xpre / taupre : 1 (event-driven)
                dxpost/dt = -xpost / taupost : 1 (event-driven)
                """, on_pre=f"""
                w = clip(w + eta * (alpha + kappa * xpost), 0, w_max)
                xpre += 1
                {current} += w * pA
                """, on_post="""
                w = clip(w + eta * (beta + gamma * xpre), 0, w_max)
                xpost += 1
                """, delay=delay, namespace={"pA": pA}, name="syn_IE")
            s.connect(i=i, j=j)
            s.w = params["weights"][ct]
            s.alpha, s.beta, s.gamma, s.kappa = vs["alpha"], vs["beta"], vs["gamma"], vs["kappa"]
            s.eta, s.w_max = 1.0, params["w_max_ie"]
            s.taupre, s.taupost = vs["tau_pre"] * ms, vs["tau_post"] * ms
            plastic = s
        else:
            s = b2.Synapses(source, target, on_pre=f"{current} += {params['weights'][ct]} * pA", delay=delay,
                            namespace={"pA": pA}, name=f"syn_{ct}")
            s.connect(i=i, j=j)
        objects.append(s)
    monitors = {name: b2.SpikeMonitor(g, name=f"spikes_{name}") for name, g in groups.items()}
    objects += list(monitors.values())
    if stop is not None:
        objects += band_stop(b2, stop, size.n_e)
    return b2.Network(*objects, name="net"), groups, plastic, monitors


def last_second_rates(monitors, groups, seconds: float) -> dict[str, float]:
    from brian2 import second

    return {name: float(np.sum(np.asarray(m.t / second) >= seconds - 1.0)) / len(groups[name])
            for name, m in monitors.items()}


def brian2_runtime(params: dict, size: Size, repeats: int) -> dict:
    import brian2 as b2

    b2.prefs.codegen.target = "cython"
    b2.defaultclock.dt = 0.1 * b2.ms

    def evaluate(seed: int, eta: float) -> tuple[tuple[float, float], dict]:
        start = clocks()
        b2.seed(seed)
        net, groups, plastic, monitors = brian2_network(params, size, seed=seed)
        plastic.eta = eta
        net.run(size.seconds * b2.second, namespace={})
        elapsed = since(start)
        rates = last_second_rates(monitors, groups, size.seconds)
        del net, groups, plastic, monitors  # free the names for the next network
        gc.collect()
        return elapsed, rates

    first, _ = evaluate(999, 1.0)  # compiles the Cython code (cached for the others)
    learned = [evaluate(1000 + k, 1.0) for k in range(repeats)]
    frozen = [evaluate(2000 + k, 0.0)[1] for k in range(repeats)]
    return {"first": first, "eval": [t for t, _ in learned], "rate_e": [r["E"] for _, r in learned],
            "frozen_e": [f["E"] for f in frozen], "frozen_i": [f["I"] for f in frozen]}


def rule_arguments(plastic, coefficients: dict) -> dict:
    """The standalone binary's run-time arguments for the doublet rule's ``coefficients``
    (alpha, beta, gamma, kappa, tau_pre and tau_post in ms)."""
    from brian2 import ms

    c = coefficients
    return {plastic.alpha: c["alpha"], plastic.beta: c["beta"], plastic.gamma: c["gamma"], plastic.kappa: c["kappa"],
            plastic.taupre: c["tau_pre"] * ms, plastic.taupost: c["tau_post"] * ms}


def brian2_standalone(params: dict, size: Size, repeats: int, directory: str) -> dict:
    """Build in ``directory`` (a second call with another input rate rebuilds what changed: a
    trial), then run the binary with the coefficients as run-time arguments."""
    import brian2 as b2
    from brian2 import ms

    b2.set_device("cpp_standalone", build_on_run=False)
    b2.prefs.devices.cpp_standalone.openmp_threads = 0  # one core, as nestplast per rank
    b2.defaultclock.dt = 0.1 * ms
    b2.seed(1000)
    net, groups, plastic, monitors = brian2_network(params, size, seed=1000)
    net.run(size.seconds * b2.second, namespace={})
    start = clocks()
    b2.device.build(directory=directory, compile=True, run=False, with_output=False)
    build = since(start)
    vs = params["vs"]
    coefficients = rule_arguments(plastic, vs)
    times, rates, frozen = [], [], []
    for _ in range(repeats):
        start = clocks()
        b2.device.run(run_args={**coefficients, plastic.eta: 1.0}, with_output=False)
        times.append(since(start))
        rates.append(last_second_rates(monitors, groups, size.seconds)["E"])
    for _ in range(repeats):
        b2.device.run(run_args={**coefficients, plastic.eta: 0.0}, with_output=False)
        frozen.append(last_second_rates(monitors, groups, size.seconds))
    return {"build": build, "eval": times, "rate_e": rates, "frozen_e": [f["E"] for f in frozen],
            "frozen_i": [f["I"] for f in frozen], "note": "one seed (compiled in): repeats are the same network"}


def brian2_trial(params: dict, size: Size, job: dict) -> dict:
    """One trial of a search in Brian2 C++ standalone: the network of ``job["seed"]`` built
    (``params`` carry the trial's input rate), stopped early as nestplast's evaluation
    (``job["stop"]``), compiled in ``job["directory"]`` (only what changed since the last trial),
    then run once per candidate (``job["candidates"]``: the rule's coefficients) with the
    coefficients as run-time arguments. Times (wall, CPU) of the build and of each run, and where
    each run stopped (None: at its end)."""
    import brian2 as b2
    from brian2 import ms

    b2.set_device("cpp_standalone", build_on_run=False)
    b2.prefs.devices.cpp_standalone.openmp_threads = 0
    b2.defaultclock.dt = 0.1 * ms
    start = clocks()
    b2.seed(job["seed"])
    net, groups, plastic, monitors = brian2_network(params, size, seed=job["seed"], stop=job["stop"])
    net.run(size.seconds * b2.second, namespace={})
    b2.device.build(directory=job["directory"], compile=True, run=False, with_output=False)
    build = since(start)
    stopped_file = os.path.join(job["directory"], "stopped_at")
    runs = []
    for c in job["candidates"]:
        if os.path.exists(stopped_file):
            os.remove(stopped_file)
        start = clocks()
        b2.device.run(run_args={**rule_arguments(plastic, c), plastic.eta: 1.0}, with_output=False)
        elapsed = since(start)
        stopped = float(open(stopped_file).read()) if os.path.exists(stopped_file) else None
        runs.append({"time": elapsed, "stopped_at": stopped,
                     "rate_e": None if stopped else last_second_rates(monitors, groups, size.seconds)["E"]})
    return {"build": build, "runs": runs}


def in_subprocess(python: str, mode: str, size: Size, repeats: int, directory: str = "",
                  rate_scale: float = 1.0) -> dict:
    """Each Brian2 run in its own process (the standalone device is global state), with the
    Python that has Brian2."""
    params = peer_params()
    params["input_rate"] *= rate_scale
    job = {"params": params, "size": dataclasses.asdict(size), "repeats": repeats, "directory": directory}
    cmd = [python, __file__, "--worker", mode, json.dumps(job)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"Brian2 {mode} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- report


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} +- {statistics.stdev(values):.2f}"


def compare(size: Size, repeats: int, python: str, drives: list[str]) -> None:
    print(f"\n{size.label} (load {os.getloadavg()[0]:.2f})", flush=True)
    sides = {f"nestplast ({drive})": nest_side(size, repeats, drive) for drive in drives}
    builtin_name = "NEST's own models"
    sides[builtin_name] = nest_builtin_side(size, repeats)
    floor = nest_floor(size, repeats)
    runtime = in_subprocess(python, "runtime", size, repeats)
    with tempfile.TemporaryDirectory() as tmp:
        standalone = in_subprocess(python, "standalone", size, repeats, tmp)
        rebuild = in_subprocess(python, "standalone", size, 1, tmp, rate_scale=1.15)["build"]  # another trial
    rt_name, sa_name = "Brian2 runtime (Cython)", "Brian2 C++ standalone"
    sides |= {rt_name: runtime, sa_name: standalone}
    wall = {name: statistics.median(w for w, _ in side["eval"]) for name, side in sides.items()}
    cpu = {name: statistics.median(c for _, c in side["eval"]) for name, side in sides.items()}
    print(f"  {'per evaluation':30} {'wall s':>8} {'CPU s':>8} {'E rate, rule (Hz)':>19} {'E, frozen (Hz)':>15} "
          f"{'I, frozen (Hz)':>15}")
    for name, side in sides.items():
        print(f"  {name:30} {wall[name]:>8.3f} {cpu[name]:>8.3f} {spread(side['rate_e']):>19} "
              f"{spread(side['frozen_e']):>15} {spread(side['frozen_i']):>15}")
    floor_cpu = statistics.median(c for _, c in floor)
    steps = (size.n_e + size.n_i) * size.seconds * 1e4  # neuron-steps of 0.1 ms
    print(f"  ({builtin_name}: iaf_psc_exp, poisson_generator, vogels_sprekeler_synapse, built and simulated, "
          f"nothing measured or read)")
    print(f"  NEST's floor: its {size.n_e + size.n_i} built-in neurons updated alone (no input, no synapses, "
          f"{size.seconds:g} s): CPU {floor_cpu:.3f} s, {1e9 * floor_cpu / steps:.1f} ns per neuron and step; "
          f"Brian2 C++'s whole evaluation / this = {cpu[sa_name] / floor_cpu:.2f}")
    first, build = runtime["first"], standalone["build"]
    print(f"  Brian2 runtime's first network (Cython compiles): wall {first[0]:.1f} s, CPU {first[1]:.1f} s; C++ "
          f"standalone: first build wall {build[0]:.1f} s, CPU {build[1]:.1f} s, rebuild for another input rate "
          f"(a trial) wall {rebuild[0]:.1f} s, CPU {rebuild[1]:.1f} s ({standalone['note']})")
    scale = 5.0 / size.seconds  # a search's evaluations simulate 5 s
    brian2_cpp = build[1] + (SEARCH_TRIALS - 1) * rebuild[1] + SEARCH_EVALUATIONS * cpu[sa_name] * scale
    brian2_runtime = first[1] + SEARCH_EVALUATIONS * cpu[rt_name] * scale
    print(f"  a whole default search, CPU ({SEARCH_EVALUATIONS} evaluations of 5 s, {SEARCH_TRIALS} trials"
          f"{'' if size.seconds == 5.0 else ', simulation scaled from ' + format(size.seconds, 'g') + ' s'}; "
          f"no early aborts): Brian2 runtime {brian2_runtime:.0f} s, Brian2 C++ (a build per trial) {brian2_cpp:.0f} s")
    for name in [f"nestplast ({drive})" for drive in drives] + [builtin_name]:
        search = SEARCH_EVALUATIONS * cpu[name] * scale
        print(f"  {name}: per evaluation, CPU: Brian2 runtime / nestplast = {cpu[rt_name] / cpu[name]:.2f}, "
              f"Brian2 C++ / nestplast = {cpu[sa_name] / cpu[name]:.2f} (wall {wall[sa_name] / wall[name]:.2f}; "
              f"goal >= 1); search {search:.0f} s, Brian2 C++ / nestplast = {brian2_cpp / search:.2f} (goal > 1)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-seconds", type=float, default=2.0, help="simulated seconds at 4096 E + 1024 I")
    parser.add_argument("--sizes", nargs="+", choices=["default", "large"], default=["default", "large"])
    parser.add_argument("--nest-drives", nargs="+", choices=["poisson_generator", "internal"],
                        default=["poisson_generator", "internal"], help="nestplast's network.drive, each measured")
    parser.add_argument("--brian2-python", default=sys.executable,
                        help="a Python with Brian2 (default: this one; see the module's doc for Python 3.11)")
    parser.add_argument("--paired", type=int, default=0, metavar="ROUNDS",
                        help="then, at each size, ROUNDS pairs of one nestplast evaluation (internal drive) and "
                             "one Brian2 C++ run, alternately")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "JOB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # a Brian2 run, in the Python that has Brian2 (no nestplast needed)
        mode, job = args.worker[0], json.loads(args.worker[1])
        size = Size(**job["size"])
        if mode == "trial":
            print(json.dumps(brian2_trial(job["params"], size, job["trial"])))
        elif mode == "runtime":
            print(json.dumps(brian2_runtime(job["params"], size, job["repeats"])))
        else:
            print(json.dumps(brian2_standalone(job["params"], size, job["repeats"], job["directory"])))
        return 0
    if not args.repeats and not args.paired:  # it measured nothing, and said nothing
        parser.error("--repeats 0 measures nothing without --paired N")
    # the last simulated second is the scoring window: training needs time before it
    if "large" in args.sizes and args.large_seconds <= 1.0:
        parser.error(f"--large-seconds: expected more than 1 s (1 s scored after training), got {args.large_seconds:g}")
    version = brian2_version(args.brian2_python)
    print(f"nestplast vs Brian2 {version}: the default experiment's network, Vogels-Sprekeler iSTDP on "
          f"I->E, one core{f'; medians of {args.repeats}' if args.repeats else ''} (shared {os.cpu_count()}-CPU machine: "
          "timings are noisy)")
    sizes = [size for name, size in (("default", Size(200, 50, 5.0)), ("large", Size(4096, 1024, args.large_seconds)))
             if name in args.sizes]
    for size in sizes:
        if args.repeats:
            compare(size, args.repeats, args.brian2_python, args.nest_drives)
        if args.paired:
            paired(size, args.paired, args.brian2_python)
    print(f"\nload {os.getloadavg()[0]:.2f}")
    return 0


def brian2_version(python: str) -> str:
    """The version of Brian2 that ``python`` imports; a SystemExit saying how to get one where it
    cannot (before any work: peer_search.py ran its whole search first, then failed in Brian2)."""
    try:
        found = subprocess.run([python, "-c", "import brian2; print(brian2.__version__)"], capture_output=True, text=True)
    except OSError as err:
        raise SystemExit(f"--brian2-python {python}: {err.strerror}") from None
    if found.returncode != 0:
        raise SystemExit(f"no working Brian2 in {python}: {found.stderr.strip().splitlines()[-1:]}\n"
                         "Brian2 is a benchmark-only extra and needs Python >= 3.12 (for NumPy 2): give such a Python "
                         "with brian2 as --brian2-python (README, 'Benchmarks'); in a Python 3.12 .venv, "
                         ".venv/bin/pip install -e '.[peer]' installs it")
    return found.stdout.strip()


if __name__ == "__main__":
    sys.exit(stopping.run(main))
