"""The internal Poisson drive (``network.drive = "internal"``): its input is Poisson at the given
rate and weight, independent between neurons, reproducible by seed, and a network driven by it
fires as one driven by NEST's ``poisson_generator``."""

import dataclasses
import math

import numpy as np
import pytest
from helpers import VOGELS_SPREKELER_10HZ

from nestplast import experiment
from nestplast.builder import build
from nestplast.evaluate import Evaluator, Task
from nestplast.kernel import install
from nestplast.networks import Trial, build_network
from nestplast.neurons import get_neuron
from nestplast.rules import get_rule

RESOLUTION = 0.1  # ms


def small(drive: str | None, **network) -> experiment.Experiment:
    return experiment.parse({"rule": {"name": "doublet", "plastic": ["IE"], "fixed": {"eta": 1.0}},
                             "network": {"n_e": 100, "n_i": 25, "p": 0.2, "w_max": {"IE": 300.0},
                                         **({} if drive is None else {"drive": drive}), **network},
                             "objective": {"target_rate": 10.0, "t_train": 2.0, "t_score": 1.0}}, "<test>")


def test_the_neuron_carries_the_drive_where_it_can():
    neuron = get_neuron("iaf_psc_exp")
    assert neuron.source.count("random_poisson(drive_mean)") == 1 and "drive_rate Hz = 0 Hz" in neuron.source
    assert "random_poisson" not in neuron.path.read_text(), "the transform, not NESTML's model, adds it"
    assert "V_bar" in neuron.with_rule_inputs().source and "random_poisson" in neuron.with_rule_inputs().source
    assert "drive_rate" not in get_neuron("iaf_cond_exp").source  # its input is a conductance


def test_the_drive_is_internal_by_default_where_the_neuron_has_it():
    assert small(None).network.drive == "internal"
    from helpers import COND_NETWORK

    cond = {"rule": {"neuron": "iaf_cond_exp"}, "network": COND_NETWORK}
    assert experiment.parse(cond, "<test>").network.drive == "poisson_generator"
    with pytest.raises(experiment.ExperimentError, match="network.drive.*'poisson_generator' for the neuron iaf_cond_exp"):
        experiment.parse({**cond, "network": {**COND_NETWORK, "drive": "internal"}}, "<test>")


def test_the_drive_chosen_for_a_neuron_follows_a_change_of_neuron_in_python():
    """default_experiment() chose 'internal' for iaf_psc_exp; exp.rule.neuron = "iaf_cond_exp" was then
    refused over a network.drive the user never set (and back again, the generator stayed). A drive
    the user gives is kept, and refused where the neuron cannot take it."""
    from helpers import COND_NETWORK

    import nestplast

    exp = nestplast.default_experiment()
    exp.rule.neuron = "iaf_cond_exp"
    for key, value in COND_NETWORK.items():
        setattr(exp.network, key, value)
    assert experiment.validate(exp).network.drive == "poisson_generator"
    exp.rule.neuron = "iaf_psc_exp"
    exp.network = experiment.NetworkSpec()
    exp.network.drive = "poisson_generator"  # given: kept
    assert experiment.validate(exp).network.drive == "poisson_generator"
    exp.network.drive = None
    assert experiment.validate(exp).network.drive == "internal"


def test_the_drive_off_changes_nothing(nest, doublet_module):
    """At drive_rate 0 (the default) the drive never runs (its random state stays unseeded) and
    the neuron follows NEST's iaf_psc_exp under the same input, to rounding."""
    trains, states = [], []
    for model in (doublet_module.neuron_model, "iaf_psc_exp"):
        nest.ResetKernel()
        install(doublet_module)
        neuron = nest.Create(model)
        kicks = nest.Create("poisson_generator", params={"rate": 8000.0})
        nest.Connect(kicks, neuron, syn_spec={"weight": 25.0})
        meter = nest.Create("multimeter", params={"record_from": ["V_m"], "interval": RESOLUTION})
        nest.Connect(meter, neuron)
        nest.Simulate(1000.0)
        trains.append(meter.events["V_m"])
        states.append(neuron.get("drive_rng") if model != "iaf_psc_exp" else None)
    assert states[0] == 0
    assert np.abs(trains[0] - trains[1]).max() < 1e-9 and trains[0].max() > -65.0


def test_internal_drive_is_poisson_at_its_rate_and_independent_between_neurons(nest, doublet_module):
    """Counts of drive events per step, read back from the excitatory current of neurons that
    never fire (I(k+1) = I(k) P + w n(k+1)): mean rate * h, Fano factor 1 (per step and per 10 ms),
    the probability of every count, no correlation from one step to the next, and none between
    two neurons. Tolerances: 5 standard errors of
    each statistic for the sample size."""
    nest.ResetKernel()
    install(doublet_module)
    nest.SetKernelStatus({"resolution": RESOLUTION, "rng_seed": 3})
    # two neurons at the default rate, one at a higher mean per step, one beyond the inversion (random_poisson)
    rates, weight, tau, t_sim = [8000.0, 8000.0, 25000.0, 120000.0], 25.0, 5.0, 10000.0
    neurons = nest.Create(doublet_module.neuron_model, len(rates),
                          params={"V_th": 1e12, "tau_syn_exc": tau, "drive_weight": weight})
    neurons.drive_rate = rates
    meter = nest.Create("multimeter", params={"record_from": ["I_syn_exc"], "interval": RESOLUTION})
    nest.Connect(meter, neurons)
    nest.Simulate(t_sim)
    events = meter.events
    counts = []
    for node in neurons.tolist():
        current = events["I_syn_exc"][events["senders"] == node]
        jumps = current - np.concatenate([[0.0], current[:-1]]) * np.exp(-RESOLUTION / tau)
        steps = jumps / weight
        assert np.allclose(steps, np.round(steps), atol=1e-6), "the current grows by whole multiples of the weight"
        counts.append(np.round(steps))
    n = len(counts[0])
    assert n > 0.99 * t_sim / RESOLUTION
    for rate, c in zip(rates, counts):
        lam = rate * RESOLUTION * 1e-3
        assert abs(c.mean() - lam) < 5 * np.sqrt(lam / n), (rate, c.mean(), lam)
        fano_se = np.sqrt((lam + 2 * lam**2) / n) / lam  # sample variance of Poisson counts, over the mean
        assert abs(c.var() / c.mean() - 1) < 5 * fano_se
        # every count's probability (the inversion compares the first counts without its loop, the rest in it)
        for k in range(int(lam + 4 * np.sqrt(lam)) + 1):
            pk = np.exp(-lam) * lam**k / math.factorial(k)
            assert abs((c == k).mean() - pk) < 5 * np.sqrt(pk * (1 - pk) / n) + 3 / n, (rate, k)
        assert abs(np.corrcoef(c[:-1], c[1:])[0, 1]) < 5 / np.sqrt(n)  # one step to the next
        windows = c[:n // 100 * 100].reshape(-1, 100).sum(axis=1)  # 10 ms: correlations between steps would show here
        lam_w, m = 100 * lam, len(windows)
        assert abs(windows.var() / windows.mean() - 1) < 5 * np.sqrt((lam_w + 2 * lam_w**2) / m) / lam_w
    assert abs(np.corrcoef(counts[0], counts[1])[0, 1]) < 5 / np.sqrt(n)


def xorshift64_counts(seed: int, mean: float, steps: int) -> tuple[list[int], int]:
    """The drive's counts computed a second way: Marsaglia's xorshift64 (13, 7, 17) on unsigned
    64-bit integers, its top 53 bits as u, and the smallest n whose cumulative Poisson
    probability (accumulated as the neuron does) reaches u. Also the state after the last step."""
    x, counts = seed % 2**64, []
    for _ in range(steps):
        x ^= (x << 13) % 2**64
        x ^= x >> 7
        x ^= (x << 17) % 2**64
        u = (x >> 11) * 2.0**-53
        n, p = 0, math.exp(-mean)
        cdf = p
        while u > cdf and p > 0:
            n += 1
            p *= mean / n
            cdf += p
        counts.append(n)
    return counts, x - 2**64 if x >= 2**63 else x  # NEST's integer is signed


def test_internal_drive_is_xorshift64_inverted(nest, doublet_module):
    """With its random state set, a neuron's counts are exactly those of the published xorshift64
    and inversion (computed in Python); each neuron seeds its own state from NEST's stream."""
    nest.ResetKernel()
    install(doublet_module)
    nest.SetKernelStatus({"resolution": RESOLUTION, "rng_seed": 5})
    rate, weight, tau, steps = 8000.0, 25.0, 5.0, 3000
    neurons = nest.Create(doublet_module.neuron_model, 3, params={"V_th": 1e12, "tau_syn_exc": tau,
                                                                "drive_rate": rate, "drive_weight": weight})
    seeds = [88172645463325252, -7046029254386353131, 0]  # Marsaglia's example; one with the top bit; 0: seed from NEST
    neurons.drive_rng = seeds
    meter = nest.Create("multimeter", params={"record_from": ["I_syn_exc"], "interval": RESOLUTION})
    nest.Connect(meter, neurons)
    nest.Simulate(steps * RESOLUTION)
    events = meter.events
    for node, seed, state in zip(neurons.tolist()[:2], seeds, neurons.drive_rng[:2]):
        current = events["I_syn_exc"][events["senders"] == node]
        jumps = current - np.concatenate([[0.0], current[:-1]]) * np.exp(-RESOLUTION / tau)
        expected, final = xorshift64_counts(seed, rate * (RESOLUTION / 1000.0), steps)
        assert len(jumps) > 0.99 * steps  # (the multimeter has not yet received the last few steps)
        assert np.round(jumps / weight).astype(int).tolist() == expected[:len(jumps)]
        assert state == final
    assert neurons.drive_rng[2] not in (0, *seeds), "the third neuron seeded its own state"


def evaluate(module, drive: str, seed: int, **network):
    exp = small(drive, **network)
    result = Evaluator(exp, module)(Task(0, 0, Trial(0, seed), VOGELS_SPREKELER_10HZ))
    assert result.status == "ok", result.error
    return result


def test_internal_drive_is_reproducible_by_seed(doublet_module):
    first, again, other = (evaluate(doublet_module, "internal", seed) for seed in (7, 7, 8))
    keys = ("rate_e", "rate_i", "cv_isi")
    assert [first.metrics[k] for k in keys] == [again.metrics[k] for k in keys]
    assert [first.metrics[k] for k in keys] != [other.metrics[k] for k in keys]


def network_statistics(nest, module, drive: str, seed: int) -> tuple[float, float]:
    """E rate (Hz) and mean CV of the ISIs of a small static network (no learning: the rate
    follows the drive) in an irregular regime (about 11 Hz, CV 0.8), over 2 s after 0.5 s."""
    spec = small(drive, input_rate=2000.0, weights={"EE": 30.0, "EI": 30.0, "IE": 300.0, "II": 300.0}).network
    nest.ResetKernel()
    install(module)
    nest.SetKernelStatus({"resolution": RESOLUTION, "rng_seed": seed})
    net = build_network(nest, spec, module, {}, Trial(0, seed))
    nest.Simulate(500.0)
    net.recorders["E"].n_events = 0
    nest.Simulate(2000.0)
    events = net.recorders["E"].events
    rate = len(events["times"]) / spec.n_e / 2.0
    cvs = []
    for node in net.populations["E"].tolist():
        isi = np.diff(np.sort(events["times"][events["senders"] == node]))
        if len(isi) >= 5:
            cvs.append(isi.std() / isi.mean())
    return rate, float(np.mean(cvs))


def test_network_fires_as_with_the_poisson_generator(nest, doublet_module):
    """E rate and CV of the ISIs over 5 seeds with each drive: the means differ by less than 3
    standard errors of their difference (trial-to-trial spread), and are the regime the test means
    (irregular firing at a few to tens of Hz)."""
    seeds = range(1, 6)
    generator = np.array([network_statistics(nest, doublet_module, "poisson_generator", s) for s in seeds])
    internal = np.array([network_statistics(nest, doublet_module, "internal", s) for s in seeds])
    for column, name in ((0, "rate"), (1, "cv")):
        a, b = generator[:, column], internal[:, column]
        spread = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / len(seeds))
        assert abs(a.mean() - b.mean()) < 3 * spread, (name, a, b)
    assert 2.0 < generator[:, 0].mean() < 60.0 and 0.5 < generator[:, 1].mean() < 1.5, generator


def test_internal_drive_needs_a_neuron_that_has_it(nest):
    """A network given the internal drive with a module whose neuron has none (one built for
    iaf_cond_exp; the experiment refuses that pairing before) says what to use instead."""
    module = build(get_rule("doublet"), "iaf_cond_exp")
    spec = dataclasses.replace(small("internal").network, neuron_params={})
    nest.ResetKernel()
    install(module)
    with pytest.raises(ValueError, match="use network.drive = 'poisson_generator'"):
        build_network(nest, spec, module, {}, Trial(0, 1))


def test_a_search_runs_with_the_poisson_generator(doublet_module, tmp_path):
    """network.drive = "poisson_generator" (the option; the other searches run the default,
    internal drive) through the search: every evaluation simulates (none fails), and the run
    records the drive it used."""
    from nestplast.search import run_search
    from nestplast.store import RunStore

    exp = experiment.parse({"network": {"drive": "poisson_generator", "n_e": 40, "n_i": 10},
                            "objective": {"t_train": 0.5, "t_score": 0.5},
                            "search": {"max_generations": 1, "population_size": 2}}, "<test>")
    outcome = run_search(exp, tmp_path / "run")
    assert outcome.evaluations == 6 and outcome.failed == 0
    with RunStore.open(tmp_path / "run") as store:
        assert store.experiment()["network"]["drive"] == "poisson_generator"


def test_a_module_gone_from_the_cache_ends_the_run_instead_of_failing_each_evaluation(tmp_path, doublet_module):
    """A rank whose node-local cache was cleaned mid-job failed every evaluation it took
    ("no compiled module at ..."), scored as penalties, and the search went on, steered by them, to
    another result than the same run uninterrupted, and exit 0."""
    from nestplast.evaluate import ModuleGone

    gone = dataclasses.replace(doublet_module, path=str(tmp_path / "cleaned" / "module"))
    evaluator = Evaluator(small(None), gone, rank=1)
    with pytest.raises(ModuleGone, match=r"rank 1: no compiled module at .*cleaned/module.so .* Every evaluation on "
                                         r"this rank would fail alike, .* so the run stops; its complete generations "
                                         r"are kept"):
        evaluator(Task(0, 0, Trial(0, 1), VOGELS_SPREKELER_10HZ))
    # any other fault is the candidate's result, recorded: a bad theta
    failed = Evaluator(small(None), doublet_module)(Task(0, 0, Trial(0, 1), [20.0, -1.0, 0.0, 0.0, 0.0, 0.0]))
    assert failed.status == "failed" and failed.error
