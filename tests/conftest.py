"""Shared fixtures: compiled rule modules, built once per test session (the cache makes later
sessions instant), and a fresh NEST kernel per test."""

import pytest

from nestplast.build import build
from nestplast.kernel import import_nest
from nestplast.rules import get_rule

# One Taylor mask that expresses Vogels-Sprekeler, additive STDP and Oja, plus weight and
# product terms that a comparison with a second implementation exercises.
TAYLOR_TEST_MASK = "pre:000,pre:010,pre:001,pre:111,post:100,post:011,post:002,post:200"


@pytest.fixture(scope="session")
def nest():
    return import_nest()


@pytest.fixture(scope="session")
def doublet_module():
    return build(get_rule("doublet"), "iaf_psc_exp")


@pytest.fixture(scope="session")
def taylor_module():
    return build(get_rule("taylor", mask=TAYLOR_TEST_MASK), "iaf_psc_exp")
