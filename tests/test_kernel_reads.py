"""Weights and spike counts read in C++ (nestplast.kernel_reads) are NEST's own, as its Python
interface reads them; where the C++ library cannot be had, that interface reads them instead."""

import re
import warnings

import numpy as np
import pytest
from helpers import VOGELS_SPREKELER_10HZ, small

from nestplast import kernel_reads
from nestplast.builder import BuildError
from nestplast.evaluate import Evaluator
from nestplast.kernel import install
from nestplast.kernel_reads import model_weights
from nestplast.networks import Trial
from nestplast.rules import get_rule


@pytest.fixture
def learned(nest, doublet_module, request):
    """A small network whose plastic weights have learned for 0.6 s (so they differ), on
    ``request.param`` threads."""
    exp = small(search={"threads": request.param})
    net = Evaluator(exp, doublet_module).build(VOGELS_SPREKELER_10HZ, Trial(0, 5))
    nest.Simulate(600.0)
    return net


@pytest.mark.parametrize("learned", [1, 2], indirect=True)
def test_weights_and_spike_counts_are_what_pynest_reads(nest, learned):
    """With several threads NEST's own GetConnections gives each thread's connections in turn, the
    threads in any order (they take turns in an OpenMP critical section): the same weights, in an
    order that may differ from call to call."""
    assert kernel_reads.library() is not None, "the C++ library was not built: these reads went through PyNEST"
    threads = nest.local_num_threads
    own = np.asarray(nest.GetConnections(synapse_model=learned.models["IE"]).get("weight"))
    assert len(np.unique(own)) > len(own) // 2  # learned: one read in the wrong order would differ
    read = learned.weights("IE")
    np.testing.assert_array_equal(np.sort(read), np.sort(own))
    if threads == 1:
        np.testing.assert_array_equal(read, own)
    for step in (7, 31, len(own) - 1, len(own) + 5):
        sample = learned.weights("IE", step=step)
        if threads == 1:
            np.testing.assert_array_equal(sample, own[::step])
        else:
            assert len(sample) == len(own[::step]) and np.isin(sample, own).all()
    for name, recorder in learned.recorders.items():
        assert learned.spike_count(name) == recorder.n_events > 0


def test_the_readme_example_reads_a_users_own_model(nest, doublet_module):
    """A user's own network (README: "To read many learned weights"): the reads grow their room
    with the model's connections, and refuse what NEST refuses."""
    nest.ResetKernel()
    install(doublet_module)
    post = nest.Create(doublet_module.neuron_model, 10)
    pre = nest.Create("parrot_neuron", 30)
    nest.Connect(nest.Create("poisson_generator", params={"rate": 50.0}), pre)
    post.set(drive_rate=8000.0, drive_weight=25.0)
    params = get_rule("doublet").synapse_params(VOGELS_SPREKELER_10HZ, eta=1.0, Wmax=-300.0)
    nest.CopyModel(doublet_module.synapse_model, "istdp", params)
    for n in (1, 2):  # the second time with twice the connections: more than the room the first read left
        nest.Connect(pre, post, {"rule": "fixed_indegree", "indegree": 10}, {"synapse_model": "istdp", "weight": -50.0})
        nest.Simulate(300.0)
        own = np.asarray(nest.GetConnections(synapse_model="istdp").weight)
        assert len(own) == n * 100 and len(np.unique(own)) > 50
        np.testing.assert_array_equal(model_weights("istdp"), own)
        np.testing.assert_array_equal(model_weights("istdp", step=10), own[::10])
    with pytest.raises(nest.NESTError):
        model_weights("no_such_model")
    with pytest.raises(ValueError, match="step must be 1 or more"):
        model_weights("istdp", step=0)
    with pytest.raises(TypeError, match="step is a whole number of connections, got 2.5"):  # NEST's slicing failed
        model_weights("istdp", step=2.5)


def test_connections_from_before_a_reset_raise_nests_error(nest, doublet_module):
    net = Evaluator(small(), doublet_module).build(VOGELS_SPREKELER_10HZ, Trial(0, 5))
    nest.ResetKernel()
    with pytest.raises(nest.NESTError):
        net.weights("IE")


def test_node_ids_are_nests_list(nest):
    nodes = nest.Create("iaf_psc_exp", 6)[1:3] + nest.Create("parrot_neuron", 5)[::2]
    assert kernel_reads.node_ids(nodes) == nodes.tolist()


def test_without_the_library_the_same_values_come_through_pynest(nest, doublet_module, tmp_path, monkeypatch):
    """A source that does not compile: the build names its log, a warning says the reads are slower,
    and the values are the same."""
    net = Evaluator(small(), doublet_module).build(VOGELS_SPREKELER_10HZ, Trial(0, 5))
    nest.Simulate(300.0)
    broken = tmp_path / "kernel_reads.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(kernel_reads, "SOURCE", broken)
    monkeypatch.setenv("NESTPLAST_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BuildError, match=r"compiling kernel_reads.cpp failed \(the log: .*\.failed\.log\)") as err:
        kernel_reads.build_library()
    log = err.value.args[0].rsplit("the log: ", 1)[1].rstrip(")")
    assert "error" in open(log).read()
    kernel_reads.library.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="through NEST's Python interface, which is slower"):
            weights = net.weights("IE")
        np.testing.assert_array_equal(weights, net.plastic["IE"].get("weight"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per process
            assert net.spike_count("E") == net.recorders["E"].n_events
    finally:
        kernel_reads.library.cache_clear()  # the next test builds (or finds) the real one


def test_a_cache_that_cannot_be_written_is_named(nest, tmp_path, monkeypatch):
    """As for modules (test_build): the folder and NESTPLAST_CACHE, not an OSError."""
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("NESTPLAST_CACHE", str(tmp_path / "file" / "cache"))
    folder = tmp_path / "file" / "cache" / "native"
    with pytest.raises(BuildError, match=re.escape(f"{kernel_reads.LIBRARY} is not in the cache {folder}, ") + ".*"
                                         "Set NESTPLAST_CACHE to a folder you can write to"):
        kernel_reads.build_library()
