"""The declarations read from a NESTML model's text (neurons and users' rule files share them)."""

from nestplast.nestml_text import declarations, declared_number
from nestplast.neurons import NEURONS

SOURCE = """\
model demo_synapse:
    state:
        w real = 1.0   # the weight
        recordable x_pre, x_post real = 0.0

    parameters:
        # a comment line inside the block
        tau ms = 20 ms
        Wmax real = -100.0 @homogeneous
        eta real = lr * 2
    equations:
        x_pre' = -x_pre / tau
    parameters:
        A_plus, A_minus real = 0.5
"""


def test_declarations_in_every_block_of_the_kind_with_line_and_type():
    assert declarations(SOURCE, "state") == {"w": (3, "real"), "x_pre": (4, "real"), "x_post": (4, "real")}
    assert declarations(SOURCE, "parameters") == {"tau": (8, "ms"), "Wmax": (9, "real"), "eta": (10, "real"),
                                                  "A_plus": (14, "real"), "A_minus": (14, "real")}


def test_declared_number_only_for_a_plain_number():
    assert declared_number(SOURCE, "Wmax") == -100.0
    assert declared_number(SOURCE, "A_minus") == 0.5
    assert declared_number(SOURCE, "eta") is None       # an expression
    assert declared_number(SOURCE, "x_pre") is None     # a state variable, not a parameter
    assert declared_number(SOURCE, "missing") is None


def test_a_neurons_parameters_are_those_of_its_nestml_file_and_the_added_ones():
    neuron = NEURONS["iaf_psc_exp"]
    plain = neuron.parameters
    assert {"C_m", "tau_m", "tau_syn_exc", "refr_T", "V_th", "I_e"} <= set(plain)
    assert not {"V_m", "I_syn_exc"} & set(plain)  # state, not parameters
    assert {"drive_rate", "drive_weight"} <= set(plain)  # the internal drive, added to its text
    assert set(neuron.with_rule_inputs().parameters) - set(plain) == {"tau_V_bar", "tau_C_exc", "tau_C_inh"}
