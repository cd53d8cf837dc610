"""Shared fixtures: compiled rule modules, built once per test session (the cache makes later
sessions instant), and NEST; tests that use them are marked ``nest`` (``-m "not nest"`` runs the
rest). Shared helpers are in ``helpers.py``."""

import contextlib
import fcntl
import os
import sys

import pytest
from helpers import TAYLOR_TEST_MASK

with contextlib.suppress(ImportError):
    # torch before NEST, as the filter command imports them: with NEST first, torch rounds
    # differently and a filter run here would propose other rules than the same run from the
    # command line (nestplast.families.NEST_BEFORE_TORCH)
    import torch  # noqa: F401

from nestplast.builder import build
from nestplast.kernel import import_nest
from nestplast.rules import get_rule

NEST_FIXTURES = {"nest", "doublet_module", "taylor_module"}


def pytest_collection_modifyitems(items):
    for item in items:
        if NEST_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.nest)


@pytest.fixture(autouse=True)
def timing_tests_run_alone(request, tmp_path_factory):
    """Under pytest-xdist (``-n auto``, as the README's test command runs them), a test marked
    ``alone`` runs while no other test does: its outcome depends on timing (MPI ranks that busy-wait
    and race for results), and a compiler on another worker took the CPU that its margins count on.
    Every test shares a lock file that an ``alone`` test holds by itself."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    alone = request.node.get_closest_marker("alone") is not None
    with open(tmp_path_factory.getbasetemp().parent / "alone.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        yield


@pytest.fixture(autouse=True)
def empty_kernel():
    """Each test starts with an empty NEST kernel, as in NEST's own test suite: the nodes a test
    leaves behind reached the next test's library calls, which warn that they discard them."""
    if "nest" in sys.modules:  # imported by an earlier test: tests without NEST stay without it
        sys.modules["nest"].ResetKernel()


@pytest.fixture(scope="session")
def nest():
    return import_nest()


@pytest.fixture(scope="session")
def doublet_module():
    return build(get_rule("doublet"), "iaf_psc_exp")


@pytest.fixture(scope="session")
def taylor_module():
    return build(get_rule("taylor", mask=TAYLOR_TEST_MASK), "iaf_psc_exp")


@pytest.fixture(scope="module")
def clustered():
    """A small clustered rate network with inhibition (the pruning tests' common case)."""
    from nestplast.rate_network import clustered_network

    return clustered_network((50, 10, 40), 0.6, 0.03, seed=4, inhibitory=0.2)
