"""The build layer: cache, concurrent builds, error messages, nest-config, command line, install."""

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nestplast.build import BuildError, build, nest_path
from nestplast.kernel import install
from nestplast.rules import Parameter, Rule, get_rule

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def test_cached_module_is_found_without_compiler(doublet_module):
    # With no compiler, cmake or make on PATH a build could not run: the cache must answer.
    code = ("from nestplast.build import build; from nestplast.rules import get_rule; "
            "print(build(get_rule('doublet'), 'iaf_psc_exp').path)")
    out = run_python(code, env={"PATH": "/nonexistent"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == doublet_module.path


def test_concurrent_builds_compile_once(tmp_path):
    """Three processes ask for the same new module at once: one compiles, the others wait for it,
    all get the same complete module, and nothing half-written is left behind."""
    code = ("import sys; from nestplast.build import build; from nestplast.rules import get_rule; "
            "m = build(get_rule('taylor', mask='post:100'), 'iaf_psc_exp', quiet=False); print(m.path)")
    env = {**os.environ, "NESTPLAST_CACHE": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=ROOT) for _ in range(3)]
    results = [p.communicate(timeout=900) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), [err for _, err, _ in results]
    paths = {out.strip() for out, _, _ in results}
    assert len(paths) == 1
    assert sum("compiling" in err for _, err, _ in results) == 1
    modules = tmp_path / "modules"
    assert [p.name for p in modules.iterdir() if ".tmp" in p.name] == []
    assert Path(paths.pop() + ".so").is_file()


def test_nestml_error_names_the_rule_and_line(tmp_path, monkeypatch):
    monkeypatch.setenv("NESTPLAST_CACHE", str(tmp_path))
    broken = Rule(name="broken", synapse="broken_synapse", parameters=(Parameter("eta", 0.1, 0, 1),), fixed={},
                  source="model broken_synapse:\n    state:\n        w real = 1.0\n\n"
                         "    input:\n        pre_spikes <- spike\n\n    output:\n        spike\n\n"
                         "    onReceive(pre_spikes):\n        w += undefined_variable\n        emit_spike(w)\n",
                  synaptic_traces=())
    with pytest.raises(BuildError) as err:
        build(broken, "iaf_psc_exp")
    message = str(err.value)
    assert "broken_synapse" in message and "broken" in message
    assert "undefined_variable" in message
    assert ":13:" in message  # the line of the offending statement
    assert not any(".tmp" in p.name for p in (tmp_path / "modules").iterdir())


def test_compiler_error_names_the_generated_file(tmp_path, monkeypatch):
    """A NEST whose headers are missing (as without Debian's libboost-dev): the C++ compiler fails,
    and the message shows its error with the generated file and the rule it came from."""
    monkeypatch.setenv("NESTPLAST_CACHE", str(tmp_path / "cache"))
    prefix, include = tmp_path / "prefix", tmp_path / "empty-include"
    (prefix / "bin").mkdir(parents=True)
    include.mkdir()
    script = prefix / "bin" / "nest-config"
    script.write_text(f"#!/bin/sh\ncase \"$1\" in --prefix) echo {prefix};; --includes) echo -I{include};; "
                      "--cflags) echo -std=c++20;; --compiler) echo g++;; --version) echo 3.10.0;; *) echo;; esac\n")
    script.chmod(0o755)
    monkeypatch.setenv("NEST_CONFIG", str(script))
    with pytest.raises(BuildError) as err:
        build(get_rule("taylor", mask="post:100"), "iaf_psc_exp")
    message = str(err.value)
    assert "error:" in message and "No such file" in message
    assert "generated from" in message


def test_working_nest_config_is_used(tmp_path, monkeypatch):
    """A NEST built from source has a nest-config that prints real paths: it is used as it is."""
    prefix = tmp_path / "nest-prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "include" / "nest").mkdir(parents=True)
    script = prefix / "bin" / "nest-config"
    script.write_text(f"#!/bin/sh\ncase \"$1\" in --prefix) echo {prefix};; "
                      f"--includes) echo -I{prefix / 'include' / 'nest'};; *) echo;; esac\n")
    script.chmod(0o755)
    monkeypatch.setenv("NEST_CONFIG", str(script))
    assert nest_path() == prefix


def test_wheel_gets_a_working_nest_config(monkeypatch, tmp_path):
    try:
        importlib.metadata.version("nest-simulator")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("this NEST is a source build, not the PyPI wheel: its own nest-config is used")
    monkeypatch.delenv("NEST_CONFIG", raising=False)
    monkeypatch.setenv("NESTPLAST_CACHE", str(tmp_path))
    folder = nest_path()
    config = folder / "bin" / "nest-config"
    prefix = subprocess.run([str(config), "--prefix"], capture_output=True, text=True).stdout.strip()
    cflags = subprocess.run([str(config), "--cflags"], capture_output=True, text=True).stdout
    assert Path(prefix).is_dir()
    assert "-D_GLIBCXX_USE_CXX11_ABI=0" in cflags  # the wheel's libstdc++ string ABI


def test_cli_json(doublet_module):
    out = subprocess.run([sys.executable, "-m", "nestplast", "build", "doublet", "--neuron", "iaf_psc_exp", "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # exactly one JSON object, nothing else on stdout
    assert data == {"module": doublet_module.path, "neuron_model": doublet_module.neuron_model,
                    "synapse_model": doublet_module.synapse_model}


@pytest.mark.parametrize("args, listed", [(["nosuchrule"], ["doublet", "taylor"]),
                                          (["doublet", "--neuron", "hh_nope"], ["iaf_psc_exp", "iaf_cond_exp"])])
def test_cli_unknown_names_list_the_available(args, listed):
    out = subprocess.run([sys.executable, "-m", "nestplast", "build", *args], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert all(name in out.stderr for name in listed)
    assert "Traceback" not in out.stderr


def test_install_is_idempotent_and_survives_reset(nest, doublet_module):
    nest.ResetKernel()
    install(doublet_module)
    install(doublet_module)  # a second call does nothing
    install(doublet_module.path + ".so")  # the library path works too
    assert doublet_module.synapse_model in nest.synapse_models
    nest.ResetKernel()  # unloads modules since NEST 3.7
    assert doublet_module.synapse_model not in nest.synapse_models
    install(doublet_module)
    assert doublet_module.synapse_model in nest.synapse_models
    with pytest.raises(ValueError, match="absolute"):
        install("relative/module")


def test_rule_on_wrong_neuron_is_a_nest_error(nest, doublet_module):
    """The stock NESTML template exits the process here; ours raises an error the user can catch."""
    nest.ResetKernel()
    install(doublet_module)
    pre, post = nest.Create("parrot_neuron"), nest.Create("iaf_psc_exp")
    with pytest.raises(Exception, match="only connects to neuron"):
        nest.Connect(pre, post, syn_spec={"synapse_model": doublet_module.synapse_model})


def test_conductance_based_neuron(nest):
    """The doublet rule with iaf_cond_exp: the neuron fires under drive and the rule learns."""
    module = build(get_rule("doublet"), "iaf_cond_exp")
    nest.ResetKernel()
    install(module)
    post = nest.Create(module.neuron_model)
    drive = nest.Create("poisson_generator", params={"rate": 8000.0})
    nest.Connect(drive, post, syn_spec={"weight": 3.0})
    pre = nest.Create("parrot_neuron", 5)
    nest.Connect(nest.Create("poisson_generator", params={"rate": 20.0}), pre)
    params = get_rule("doublet").synapse_params([20, 20, -0.4, 0, 1, 1], eta=0.01, Wmax=-10.0)
    nest.CopyModel(module.synapse_model, "istdp", params)
    nest.Connect(pre, post, syn_spec={"synapse_model": "istdp", "weight": -1.0})
    recorder = nest.Create("spike_recorder")
    nest.Connect(post, recorder)
    nest.Simulate(2000.0)
    weights = np.array(nest.GetConnections(synapse_model="istdp").weight)
    assert recorder.n_events > 20  # above the 10 Hz target ...
    assert np.all(weights < -1.0)  # ... so inhibition grows (more negative)
