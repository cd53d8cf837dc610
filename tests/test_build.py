"""The build layer: cache, concurrent builds, error messages, nest-config, command line, install."""

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import numpy as np
import pytest
from helpers import MULTIPLICATIVE_MASK, TAYLOR_TEST_MASK

import nestplast
import nestplast.builder as builder  # the module; nestplast.build is its function
from nestplast.builder import (
    OVERLAY_DIR,
    OVERLAY_MANIFEST,
    BuildError,
    Module,
    _explain_failure,
    build,
    nest_path,
    nestml_templates_dir,
    templates_dir,
)
from nestplast.commands import build as build_command
from nestplast.errors import UserError
from nestplast.kernel import install
from nestplast.neurons import NEURONS, add_input_resistance
from nestplast.rules import MODELS_DIR, Parameter, Rule, get_rule, vogels_sprekeler
from nestplast.user_rules import UserRuleError, rule_from_file

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def test_cached_module_is_found_without_compiler(doublet_module):
    # With no compiler, cmake or make on PATH a build could not run: the cache must answer.
    code = ("from nestplast.builder import build; from nestplast.rules import get_rule; "
            "print(build(get_rule('doublet'), 'iaf_psc_exp').path)")
    out = run_python(code, env={"PATH": "/nonexistent"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == doublet_module.path


def test_concurrent_builds_compile_once(tmp_path):
    """Three processes ask for the same new module at once: one compiles, the others wait for it,
    all get the same complete module, and nothing half-written is left behind."""
    code = ("import sys; from nestplast.builder import build; from nestplast.rules import get_rule; "
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
    # the three also assembled the template folder at the same time: one complete copy
    assert [p.name for p in (tmp_path / "templates").iterdir()] == [templates_dir().name]


def descendants(pid: int) -> dict[int, str]:
    """The processes below ``pid`` (pid -> command name), from /proc."""
    parent, names = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        parent[int(stat.parent.name)], names[int(stat.parent.name)] = int(rest[1]), name
    found, todo = {}, [pid]
    while todo:
        current = todo.pop()
        for child in [c for c, p in parent.items() if p == current]:
            found[child] = names[child]
            todo.append(child)
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_a_stopped_build_stops_its_compilers_and_a_killed_ones_leftovers_go(tmp_path):
    """nestplast stopped by SIGTERM (kill PID, a batch system) during a compile left make and the
    compilers running, orphaned, into a deleted folder; a build killed with SIGKILL left its
    temporary folder in the cache for good. The next build of that module removes it."""
    import signal
    import time

    from nestplast.builder import _post_neuron, module_key

    rules = [get_rule("taylor", mask="pre:222")]
    stale = tmp_path / "modules" / f"{module_key(rules, _post_neuron(rules, 'iaf_psc_exp'))}.tmpkilled"
    stale.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-m", "nestplast", "build", "taylor", "--mask", "pre:222"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "NESTPLAST_CACHE": str(tmp_path)})
    deadline = time.monotonic() + 300
    while not {"make", "cc1plus", "cmake"} & set(descendants(proc.pid).values()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    assert not stale.exists(), "the killed build's folder went before the new one began"
    below = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)  # to nestplast alone, as kill PID
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err, err
    deadline = time.monotonic() + 10
    while (alive := [pid for pid in below if Path(f"/proc/{pid}").exists()]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, {pid: below[pid] for pid in alive}
    assert [p.name for p in (tmp_path / "modules").iterdir() if ".tmp" in p.name] == []


def overlay_names() -> set[str]:
    lines = [ln for ln in OVERLAY_MANIFEST.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return {ln.split(maxsplit=1)[1] for ln in lines}


def test_templates_are_nestml_s_own_with_the_overlay(tmp_path, monkeypatch):
    """The repository holds only the templates nestplast changed, each listed with the hash of
    the stock file it was made from; the build assembles the folder from the installed NESTML."""
    monkeypatch.setenv("NESTPLAST_CACHE", str(tmp_path))
    overlay = {p.relative_to(OVERLAY_DIR).as_posix() for p in OVERLAY_DIR.rglob("*") if p.is_file()}
    assert overlay == overlay_names() == {"common/NeuronClass.jinja2", "common/NeuronHeader.jinja2",
                                          "common/SynapseHeader.h.jinja2", "directives_cpp/SpikeBufferGetter.jinja2",
                                          "directives_cpp/ContinuousInputBufferGetter.jinja2"}
    folder, stock = templates_dir(), nestml_templates_dir()
    assert folder.parent == tmp_path / "templates"
    stock_names = {p.relative_to(stock).as_posix() for p in stock.rglob("*.jinja2")}
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == stock_names
    for name in stock_names:
        source = OVERLAY_DIR / name if name in overlay else stock / name
        assert (folder / name).read_bytes() == source.read_bytes(), name
    for name in overlay:
        assert "nestplast:" in (OVERLAY_DIR / name).read_text()  # every change is marked
    assert templates_dir() == folder


@pytest.fixture
def stock_copy(tmp_path, monkeypatch):
    """A copy of NESTML's templates that the build takes for the installed ones."""
    stock = tmp_path / "stock"
    shutil.copytree(nestml_templates_dir(), stock)
    monkeypatch.setenv("NESTPLAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(builder, "nestml_templates_dir", lambda: stock)
    builder._template_files.cache_clear()
    builder._templates_digest.cache_clear()
    yield stock
    monkeypatch.undo()
    builder._template_files.cache_clear()
    builder._templates_digest.cache_clear()


def test_changed_nestml_template_is_refused(stock_copy, capsys):
    """A NESTML whose template differs from the one an overlay file was made from: a clear error
    before anything is generated, also as one line from the command line."""
    changed = stock_copy / "common" / "SynapseHeader.h.jinja2"
    changed.write_text(changed.read_text() + "\n{# a newer NESTML #}\n")
    with pytest.raises(BuildError, match=r"another version of the template common/SynapseHeader\.h\.jinja2.*"
                                         r"nestml==9\.0\.0.*port the changes marked 'nestplast:'"):
        build(get_rule("doublet"), "iaf_psc_exp")
    assert issubclass(BuildError, UserError)
    assert build_command.main(["doublet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the installed NESTML") and "Traceback" not in err
    changed.unlink()
    with pytest.raises(BuildError, match="lacks the template common/SynapseHeader"):
        build(get_rule("doublet"), "iaf_psc_exp")


def test_neurons_are_nestml_s_own_models():
    """The neurons are the models that ship with NESTML, read where pip installed them."""
    shipped = {Path(f.locate()).resolve() for f in importlib.metadata.files("nestml") if f.suffix == ".nestml"}
    for neuron in NEURONS.values():
        assert neuron.path in shipped
        assert f"model {neuron.model}:" in neuron.source
        assert not (MODELS_DIR / neuron.path.name).exists()  # no copy in the repository


def test_constant_inputs_are_scaled_by_a_precomputed_resistance():
    """iaf_psc_exp's I_e and I_stim enter its equation through the internal R_m = tau_m / C_m (its
    exact solution then multiplies in every step, where it divided four times); a neuron whose
    equation has another form is refused, not left as it was."""
    text = NEURONS["iaf_psc_exp"].source
    equations = [line.split("#")[0].strip() for line in text.splitlines() if line.strip().startswith("V_m' =")]
    assert equations == ["V_m' = -(V_m - E_L) / tau_m + (I_syn_exc - I_syn_inh) / C_m + (I_e + I_stim) * R_m / tau_m"]
    assert "R_m GOhm = tau_m / C_m" in text
    with pytest.raises(ValueError, match="input resistance"):
        add_input_resistance(NEURONS["iaf_cond_exp"].path.read_text())


def test_iaf_psc_exp_follows_nest_s_own_model(nest, doublet_module):
    """With I_e, a step current (I_stim) and excitatory and inhibitory spikes, the compiled neuron's
    V_m and spikes are those of NEST's hand-written iaf_psc_exp, to rounding."""
    traces, spikes = [], []
    for model in (doublet_module.neuron_model, "iaf_psc_exp"):
        nest.ResetKernel()
        nest.rng_seed = 11
        install(doublet_module)
        neuron = nest.Create(model, params={"I_e": 120.0, "tau_m": 15.0, "C_m": 200.0})
        step = nest.Create("step_current_generator", params={"amplitude_times": [100.0, 300.0, 450.0],
                                                             "amplitude_values": [150.0, -80.0, 60.0]})
        nest.Connect(step, neuron)
        for rate, weight in ((6000.0, 20.0), (2000.0, -30.0)):
            nest.Connect(nest.Create("poisson_generator", params={"rate": rate}), neuron, syn_spec={"weight": weight})
        meter = nest.Create("multimeter", params={"record_from": ["V_m"], "interval": 0.1})
        recorder = nest.Create("spike_recorder")
        nest.Connect(meter, neuron)
        nest.Connect(neuron, recorder)
        nest.Simulate(600.0)
        traces.append(meter.events["V_m"])
        spikes.append(recorder.events["times"])
    assert len(spikes[0]) > 5
    np.testing.assert_array_equal(spikes[0], spikes[1])
    assert np.abs(traces[0] - traces[1]).max() < 1e-9


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


@pytest.mark.parametrize("tools, missing", [((), "cmake"), (("cmake", "make"), "g++")])
def test_a_missing_build_tool_is_named_with_how_to_install_it(tmp_path, monkeypatch, tools, missing):
    """Without cmake on PATH the message was the start of a traceback cut before its decisive
    'FileNotFoundError: ... cmake'. It names the missing tool (or compiler) and how to install it,
    before NESTML spends its 15-20 s generating code that cannot be compiled: no build log."""
    monkeypatch.setenv("NESTPLAST_CACHE", str(tmp_path / "cache"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(BuildError) as err:
        build(get_rule("doublet"), "iaf_psc_exp")
    message = str(err.value)
    assert f"{missing} is not on PATH" in message and "apt-get install cmake make g++" in message
    assert list((tmp_path / "cache" / "modules").glob("*.failed.log")) == []


@pytest.mark.parametrize("log, missing", [
    ("  File \"nest_builder.py\", line 150\nFileNotFoundError: [Errno 2] No such file or directory: 'cmake'\n", "cmake"),
    ("CMake Error at CMakeLists.txt:95 (project):\n  No CMAKE_CXX_COMPILER could be found.\n", "a C++ compiler"),
    ("/bin/sh: 1: ccache: not found\nmake[2]: *** [Makefile:76: x.o] Error 127\n", "ccache")])
def test_a_tool_missing_during_the_build_is_named_from_its_log(log, missing):
    """A tool that goes missing after the check before the build (or one that CMake or make calls
    on their own) is read from the log, as cmake, make and the shell say it."""
    message = _explain_failure(log, {}, {})
    assert message.startswith(f"{missing} is not on PATH")
    assert ("apt-get install cmake make g++" in message) == (missing != "ccache")


def test_an_unrecognised_build_failure_shows_the_end_of_its_log(tmp_path, monkeypatch):
    """A failure nestplast does not recognise shows the last lines of the log, the exception that
    ended it included, and names the full log."""
    monkeypatch.setenv("NESTPLAST_CACHE", str(tmp_path / "cache"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cmake").write_text("#!/bin/sh\necho 'a cmake that breaks in an unheard-of way' >&2\nexit 3\n")
    (bin_dir / "cmake").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(BuildError) as err:
        build(get_rule("doublet"), "iaf_psc_exp")
    message = str(err.value)
    assert "no error message recognised; the end of the build log:" in message
    assert message.splitlines()[-2].strip().startswith("pynestml.exceptions.generated_code_build_exception")
    assert "the whole build log: " in message and message.endswith(".failed.log")


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


def test_a_nest_config_that_cannot_run_is_passed_over(tmp_path, monkeypatch):
    """A NEST_CONFIG whose interpreter is gone ended the build in a raw OSError traceback; it is
    passed over as one that prints no paths is."""
    script = tmp_path / "nest-config"
    script.write_text("#!/no/such/interpreter\n")
    script.chmod(0o755)
    monkeypatch.setenv("NEST_CONFIG", str(script))
    monkeypatch.setenv("NESTPLAST_CACHE", str(tmp_path / "cache"))
    assert nest_path() != tmp_path


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


def test_the_build_function_and_its_module_are_named_apart():
    """``nestplast.build`` is the function; ``import nestplast.builder as b`` gives its module. When the
    module was named build too, that import gave the function (a package attribute is one or the
    other), and ``b.cache_dir()`` failed."""
    assert nestplast.build is builder.build
    assert isinstance(builder, types.ModuleType) and callable(builder.cache_dir)


def test_cli_json(doublet_module):
    """``python -m nestplast build --json`` prints the module and nothing else."""
    out = subprocess.run([sys.executable, "-m", "nestplast", "build", "doublet", "--neuron", "iaf_psc_exp", "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    data = json.loads(out.stdout)  # exactly one JSON object, nothing else on stdout
    assert data == {"module": doublet_module.path, "neuron_model": doublet_module.neuron_model,
                    "synapse_model": doublet_module.synapse_model}


@pytest.mark.parametrize("args, module", [(["doublet"], "doublet_module"),
                                          (["taylor", "--mask", TAYLOR_TEST_MASK], "taylor_module")])
def test_cli_example_works(nest, request, args, module):
    """The printed example runs as it is and learns: an inhibitory projection whose weights stay
    negative and grow stronger (the neuron fires above the 10 Hz target of the example)."""
    request.getfixturevalue(module)  # compiled (or cached) already
    out = subprocess.run([sys.executable, "-m", "nestplast", "build", *args],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    example = textwrap.dedent(out.stdout.split("on an inhibitory projection:")[1])
    assert "eta=0.01" in example and "Wmax=-100.0" in example and "'weight': -10.0" in example
    assert "Wmax carries the sign of the weights" in example
    nest.ResetKernel()
    scope = {}
    exec(example, scope)
    pre, post = scope["pre"], scope["post"]
    nest.Connect(nest.Create("poisson_generator", params={"rate": 20.0}), pre)
    nest.Connect(nest.Create("poisson_generator", params={"rate": 8000.0}), post, syn_spec={"weight": 30.0})
    recorder = nest.Create("spike_recorder")
    nest.Connect(post, recorder)
    nest.Simulate(2000.0)
    weights = np.array(nest.GetConnections(synapse_model="my_rule").weight)
    assert recorder.n_events > 40
    assert np.all(weights < -10.1)  # more negative: stronger inhibition


@pytest.mark.parametrize("args, listed", [(["nosuchrule"], ["doublet", "taylor"]),
                                          (["doublet", "--neuron", "hh_nope"], ["iaf_psc_exp", "iaf_cond_exp"]),
                                          # NESTML's model name: built, then refused by the experiment's rule.neuron
                                          (["doublet", "--neuron", "iaf_cond_exp_neuron"],
                                           ["give the neuron's name, iaf_cond_exp"])])
def test_cli_unknown_names_list_the_available(args, listed):
    out = subprocess.run([sys.executable, "-m", "nestplast", "build", *args], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert all(name in out.stderr for name in listed)
    assert "Traceback" not in out.stderr


def test_a_rule_file_not_named_nestml_is_pointed_out(tmp_path):
    """MyRule.NESTML in the working folder was read as a built-in rule's name, "unknown rule", no more."""
    shutil.copy(ROOT / "examples" / "own_rule" / "pair_stdp_synapse.nestml", tmp_path / "MyRule.NESTML")
    out = subprocess.run([sys.executable, "-m", "nestplast", "build", "MyRule.NESTML"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert out.returncode == 2 and "unknown rule 'MyRule.NESTML'" in out.stderr
    assert f"MyRule.NESTML is a file, but a rule file is read as one only where its name ends in .nestml or holds a " \
           f"folder (e.g. .{os.sep}MyRule.NESTML)" in out.stderr
    # a data file: that hint led on to "is no rule file"
    (tmp_path / "good.npz").write_bytes(b"PK\x03\x04")
    out = subprocess.run([sys.executable, "-m", "nestplast", "build", "good.npz"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 2 and "good.npz is a data file, not a rule: give a rule name or a NESTML synapse file" \
        in out.stderr and "./good.npz" not in out.stderr, out.stderr


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


def test_install_knows_its_module_however_it_was_named(nest, doublet_module, tmp_path):
    """NEST lists a module by the path it was given: the user's own nest.Install of the .so, or a
    path through a symlink, is the same library, not a second module that conflicts with it."""
    nest.ResetKernel()
    nest.Install(doublet_module.path + ".so")  # the user's own call, before nestplast's
    install(doublet_module)
    nest.ResetKernel()
    link = tmp_path / "link"
    link.symlink_to(Path(doublet_module.path).parent)
    install(str(link / doublet_module.name))
    install(doublet_module)
    assert len(nest.GetKernelStatus("modules")) == 1
    nest.ResetKernel()
    install(Path(doublet_module.path).parent)  # the cache folder that build prints
    assert doublet_module.synapse_model in nest.synapse_models
    with pytest.raises(FileNotFoundError, match="no module.json"):
        install(tmp_path)


def test_a_cache_that_cannot_be_written_is_named_with_what_to_do(tmp_path):
    """A module not yet in the cache, and a cache it cannot be compiled into (read-only, shared, a
    file in the way): one line that names the folder and NESTPLAST_CACHE, not a traceback."""
    (tmp_path / "file").write_text("")
    env = {**os.environ, "NESTPLAST_CACHE": str(tmp_path / "file" / "cache")}
    out = subprocess.run([sys.executable, "-m", "nestplast", "build", "taylor", "--mask", "post:100"],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert f"not in the cache {tmp_path / 'file' / 'cache' / 'modules'}" in out.stderr
    assert "Set NESTPLAST_CACHE to a folder you can write to" in out.stderr


def test_a_cache_entry_that_lost_its_library_is_not_taken_for_a_module(doublet_module, tmp_path, monkeypatch):
    """A scratch purge or a partial copy of the cache deletes the library but leaves module.json:
    build() must not hand that entry out (install() would then fail, and build() again with it)."""
    entry = tmp_path / "modules" / Path(doublet_module.path).parent.name
    shutil.copytree(Path(doublet_module.path).parent, entry)
    (entry / f"{doublet_module.name}.so").unlink()
    (tmp_path / "modules" / f"{entry.name}.lock").mkdir()  # stops the build before the compiler, quickly
    monkeypatch.setenv("NESTPLAST_CACHE", str(tmp_path))
    with pytest.raises(BuildError, match="is not in the cache"):
        build(get_rule("doublet"), "iaf_psc_exp")
    with pytest.raises(FileNotFoundError, match=r"build\(\) the rule again"):
        install(str(entry / doublet_module.name))


def test_modules_of_two_rules_run_side_by_side_in_one_kernel(nest, doublet_module, taylor_module):
    """Each module holds only its paired neuron (named after its rule): a second module installs
    beside the first, and each rule learns on its own neuron. (With NESTML's plain neuron in every
    module, NEST refused the second one.)"""
    nest.ResetKernel()
    install(doublet_module)
    install(taylor_module)
    drive = nest.Create("poisson_generator", params={"rate": 8000.0})
    pre = nest.Create("parrot_neuron", 5)
    nest.Connect(nest.Create("poisson_generator", params={"rate": 20.0}), pre)
    doublet = get_rule("doublet").synapse_params(vogels_sprekeler(10.0), eta=1.0, Wmax=-300.0)
    taylor = get_rule("taylor", mask=TAYLOR_TEST_MASK).synapse_params(  # the same rule in Taylor terms
        {"th_pre_000": -0.4, "th_pre_010": 1.0, "th_post_100": 1.0}, eta=1.0, Wmax=-300.0)
    for module, params in ((doublet_module, doublet), (taylor_module, taylor)):
        nest.CopyModel(module.synapse_model, f"{module.name}_rule", params)
        post = nest.Create(module.neuron_model)
        nest.Connect(drive, post, syn_spec={"weight": 30.0})
        nest.Connect(pre, post, syn_spec={"synapse_model": f"{module.name}_rule", "weight": -10.0})
    nest.Simulate(1000.0)
    for module in (doublet_module, taylor_module):
        weights = nest.GetConnections(synapse_model=f"{module.name}_rule").weight
        assert all(w < -10.0 for w in weights), (module.name, weights)  # both post neurons fire above 10 Hz


def test_two_modules_of_one_synapse_model_are_refused_saying_what_to_do(nest, taylor_module):
    """Two masks of one rule compile to the same model names: NEST refuses the second module with
    a naming conflict; the message says why and what to do (one module cannot hold two masks of a
    rule either: build() refuses that, test_build_takes_rule_names_and_refuses_rules_it_would_lose)."""
    from nestplast.kernel import ModuleConflictError

    other_mask = build(get_rule("taylor", mask=MULTIPLICATIVE_MASK), "iaf_psc_exp")  # test_rule_agreement's
    nest.ResetKernel()
    install(build("doublet"))
    install(taylor_module)
    with pytest.raises(ModuleConflictError, match=r"beside .*taylor.*two masks of one rule.*mask holds the terms of both"):
        install(other_mask)
    # it names the module that clashes, not every module installed (the doublet's too, before)
    with pytest.raises(ModuleConflictError, match=rf"beside {Path(taylor_module.path).name} in one kernel"):
        install(other_mask)


def test_build_takes_rule_names_and_refuses_rules_it_would_lose():
    assert build("doublet") == build(get_rule("doublet"))
    with pytest.raises(BuildError, match="no rule"):
        build([])
    # what is no rule at all is named ("'int' object is not iterable", pathlib's TypeError for install(rule))
    with pytest.raises(TypeError, match=r"build: expected a rule .*; got 3 \(int\)"):
        build(3)
    with pytest.raises(TypeError, match=r"got Rule \(build it first: install\(build\(rule\)\)\)"):
        install(get_rule("doublet"))
    two_masks = [get_rule("taylor", mask="pre:000,post:100"), get_rule("taylor", mask="pre:010,post:100")]
    with pytest.raises(BuildError, match="2 of the rules compile to the synapse model taylor_synapse"):
        build(two_masks)


def test_a_module_of_several_rules_says_how_to_take_one_synapse_model():
    module = Module(path="/m/two", name="two", neuron_model="n", synapse_models={"doublet": "d__with_n", "mlp": "m__with_n"})
    with pytest.raises(ValueError, match=r"module.synapse_models\[name\], name one of \['doublet', 'mlp'\]"):
        module.synapse_model  # noqa: B018 (the property raises)


def test_rule_on_wrong_neuron_is_a_nest_error(nest, doublet_module):
    """The stock NESTML template exits the process here; ours raises an error the user can catch."""
    nest.ResetKernel()
    install(doublet_module)
    pre, post = nest.Create("parrot_neuron"), nest.Create("iaf_psc_exp")
    with pytest.raises(Exception, match="only connects to neuron"):
        nest.Connect(pre, post, syn_spec={"synapse_model": doublet_module.synapse_model})


@pytest.mark.parametrize("device", ["poisson_generator", "spike_generator", "dc_generator"])
def test_a_device_cannot_connect_through_the_rule(nest, doublet_module, device):
    """As NEST's own STDP synapses: a device would call the synapse in every step, each step a
    presynaptic spike (x_pre grew by 1 per 0.1 ms). A parrot_neuron passes a device's spikes on."""
    nest.ResetKernel()
    install(doublet_module)
    post = nest.Create(doublet_module.neuron_model)
    with pytest.raises(nest.NESTErrors.IllegalConnection):
        nest.Connect(nest.Create(device), post, syn_spec={"synapse_model": doublet_module.synapse_model})
    generator, parrot = nest.Create("poisson_generator", params={"rate": 50.0}), nest.Create("parrot_neuron")
    nest.Connect(generator, parrot)
    nest.Connect(parrot, post, syn_spec={"synapse_model": doublet_module.synapse_model, "weight": 1.0})
    nest.Simulate(100.0)
    assert nest.GetConnections(parrot, post).get("x_pre") < 10  # about 5 spikes at 50 Hz in 100 ms, traces decaying


@pytest.mark.parametrize("params, broken", [
    ({"tau_pre": 0.0}, "tau_pre > 0 ms"), ({"tau_post": float("nan")}, "tau_post > 0 ms"),
    ({"Wmin": -50.0, "Wmax": -10.0}, "abs(Wmin) <= abs(Wmax)"),  # the weight would jump to Wmax
    # set in NEST, not through synapse_params: weights of 2 became 5 (a floor of |Wmin|), and a
    # coefficient of NaN made every weight |Wmin|, each without a word
    ({"Wmin": -5.0, "Wmax": 300.0}, "Wmin -5 with Wmax 300: synapse model"),
    ({"alpha": float("nan")}, "alpha is NaN (not a number)"),
])
def test_a_rule_refuses_parameters_it_cannot_run_with(nest, doublet_module, params, broken):
    nest.ResetKernel()
    install(doublet_module)
    with pytest.raises(nest.NESTErrors.BadProperty, match=re.escape(broken)):
        nest.CopyModel(doublet_module.synapse_model, "refused", params)
    nest.CopyModel(doublet_module.synapse_model, "taken", {"Wmin": -5.0, "Wmax": -10.0})  # the rule acts on |w|


def test_a_nan_weight_is_refused_on_a_connection(nest, doublet_module):
    """It passed the weight's sign check (both comparisons false) and was delivered as NaN. (At
    Connect, NEST reads a NaN weight as none given: the model's default.)"""
    nest.ResetKernel()
    install(doublet_module)
    pre, post = nest.Create("parrot_neuron"), nest.Create(doublet_module.neuron_model)
    nest.Connect(pre, post, syn_spec={"synapse_model": doublet_module.synapse_model, "weight": 2.0})
    connection = nest.GetConnections()
    with pytest.raises(nest.NESTErrors.BadProperty, match=re.escape("The weight is NaN (not a number)")):
        connection.set(weight=float("nan"))
    assert connection.get("weight") == 2.0


PAIRED_NEURON_REFUSES = [  # (neuron, NEST's names and values, the condition quoted)
    # NEST's iaf_psc_exp computes equal time constants with its own formula; NESTML's exact solution
    # divides by tau_m - tau_syn, and V_m was NaN without a word
    ("iaf_psc_exp", {"tau_m": 10.0, "tau_syn_in": 10.0}, "abs(tau_syn_inh - tau_m) >= 0.001 * tau_m"),
    ("iaf_psc_exp", {"tau_syn_ex": 5.0, "tau_m": 5.000001}, "abs(tau_syn_exc - tau_m) >= 0.001 * tau_m"),
    # what NEST's own models refuse
    ("iaf_psc_exp", {"tau_syn_ex": -1.0}, "tau_syn_exc > 0 ms"),
    ("iaf_psc_exp", {"tau_m": 0.0}, "tau_m > 0 ms"),
    ("iaf_psc_exp", {"C_m": 0.0}, "C_m > 0 pF"),
    ("iaf_psc_exp", {"t_ref": -1.0}, "refr_T >= 0 ms"),
    ("iaf_psc_exp", {"V_reset": -50.0}, "V_reset < V_th"),
    ("iaf_cond_exp", {"tau_syn_in": 0.0}, "tau_syn_inh > 0 ms"),
    ("iaf_cond_exp", {"V_th": -65.0}, "V_reset < V_th"),
]


@pytest.mark.parametrize("neuron, nest_params, condition", PAIRED_NEURON_REFUSES)
def test_the_paired_neuron_refuses_what_nest_s_own_refuses(nest, neuron, nest_params, condition):
    """An existing model's parameters carried over with params_from_nest: a value that NEST's own
    model refuses, or one NESTML's solution cannot compute, is refused with the condition it
    breaks, and the neuron keeps the values it had (NESTML's neuron took them, and ran on NaN)."""
    module = build(get_rule("doublet"), neuron)
    nest.ResetKernel()
    install(module)
    if "tau_m" not in nest_params:  # NEST refuses it too
        with pytest.raises(nest.NESTErrors.BadProperty):
            nest.Create(neuron, params=nest_params)
    post = nest.Create(module.neuron_model)
    before = post.get()
    with pytest.raises(nest.NESTErrors.BadProperty, match=re.escape(condition)):
        post.set(NEURONS[neuron].params_from_nest(nest_params))
    assert post.get() == before


@pytest.mark.parametrize("params", [{"drive_rate": -1.0}, {"drive_weight": -5.0}])
def test_the_neurons_own_drive_refuses_negative_rates_and_weights(nest, doublet_module, params):
    """As NEST's poisson_generator refuses a negative rate; a negative weight would take the
    excitatory current down rather than drive the inhibitory one (use a poisson_generator)."""
    nest.ResetKernel()
    install(doublet_module)
    neuron = nest.Create(doublet_module.neuron_model, params={"drive_rate": 8000.0, "drive_weight": 25.0})
    with pytest.raises(nest.NESTErrors.BadProperty, match=f"{next(iter(params))} >= 0"):
        neuron.set(params)
    # the refused value is not kept (it was, and the next Simulate ran with it)
    assert (neuron.drive_rate, neuron.drive_weight) == (8000.0, 25.0)
    neuron.set(drive_weight=20.0)  # and it does not block the next, valid setting
    assert neuron.drive_weight == 20.0



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
    # the printed example's weights are conductances here (it gave the pA example's 10 under a Wmax of 100)
    out = subprocess.run([sys.executable, "-m", "nestplast", "build", "doublet", "--neuron", "iaf_cond_exp"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    example = textwrap.dedent(out.stdout.split("on an inhibitory projection:")[1])
    assert "# iaf_cond_exp: weights in nS (conductances)" in example
    assert "Wmax=-20.0" in example and "'weight': -3.0" in example
    nest.ResetKernel()
    exec(example, {})


def test_cli_example_of_a_rule_that_searches_eta_works(nest):
    """mlp_fsbi searches eta: its example gives eta with the coefficients (given as a fixed setting,
    the printed example raised UnknownParameterError)."""
    module = build(get_rule("mlp_fsbi"), "iaf_psc_exp")  # compiled (or cached) already
    out = subprocess.run([sys.executable, "-m", "nestplast", "build", "mlp_fsbi"], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    example = textwrap.dedent(out.stdout.split("on an inhibitory projection:")[1])
    nest.ResetKernel()
    scope = {}
    exec(example, scope)
    assert nest.GetDefaults("my_rule", ["eta", "Wmax"]) == [0.01, -100.0]
    assert nest.GetConnections(synapse_model="my_rule").weight == [-10.0] * 10
    assert module.synapse_model in example
    # and it learns: before, only a hidden weight was set, the output layer stayed 0, and no weight moved
    nest.Connect(nest.Create("poisson_generator", params={"rate": 20.0}), scope["pre"])
    nest.Connect(nest.Create("poisson_generator", params={"rate": 8000.0}), scope["post"], syn_spec={"weight": 30.0})
    nest.Simulate(1000.0)
    assert all(w < -10.0 for w in nest.GetConnections(synapse_model="my_rule").weight)


def test_a_runs_wmax_drawn_per_trial_is_said_with_its_settings(tmp_path, doublet_module):
    """With trials.w_max_scale = [0.5, 0.6] the report and `build RUN_DIR` gave Wmax = -300 as the
    setting the best rule "ran with", while every trial ran with -150 to -180: a copy of it
    saturated at twice the bound."""
    exp = nestplast.default_experiment()
    exp.network.n_e, exp.network.n_i = 20, 5
    exp.objective.t_train, exp.objective.t_score = 0.3, 0.3
    exp.search.max_generations, exp.search.population_size, exp.trials.n = 1, 2, 1
    exp.trials.w_max_scale = [0.5, 0.6]
    exp.network.weights["IE"] = 100.0  # within every trial's Wmax
    nestplast.run_search(exp, tmp_path / "run")
    said = ("note: Wmax above is network.w_max; the trials scaled it by trials.w_max_scale [0.5, 0.6], so the rule "
            "ran with Wmax from IE -150 to -180: choose yours in that range")
    report = subprocess.run([sys.executable, "-m", "nestplast.report", str(tmp_path / "run"), "--no-plots"],
                            capture_output=True, text=True, cwd=ROOT)
    assert f"  {said}\n" in report.stdout and "IE (" in report.stdout, report.stdout
    built = subprocess.run([sys.executable, "-m", "nestplast", "build", str(tmp_path / "run")], capture_output=True,
                           text=True, cwd=ROOT)
    assert built.returncode == 0 and said in built.stderr, built.stderr
    # read where the module is not compiled (a run copied off a cluster): the model's name went without a word
    elsewhere = subprocess.run([sys.executable, "-m", "nestplast.report", str(tmp_path / "run"), "--no-plots"],
                               capture_output=True, text=True, cwd=ROOT,
                               env={**os.environ, "NESTPLAST_CACHE": str(tmp_path / "empty cache")})
    assert (f"  their module is not compiled on this machine (not in its cache): python -m nestplast build "
            f"{tmp_path / 'run'} compiles it and names each type's synapse model") in elsewhere.stdout, elsewhere.stdout
    assert "not compiled on this machine" not in report.stdout


def test_a_runs_own_module_is_built_from_its_folder(tmp_path, doublet_module):
    """`build mlp` made the default MLP, whose parameter names a shaped MLP run's settings share:
    NEST took them on another rule without a word. `build RUN_DIR` gives the run's own module (the
    report's) and its best rule's settings, and the example it prints runs."""
    exp = nestplast.default_experiment()
    exp.network.n_e, exp.network.n_i = 20, 5
    exp.objective.t_train, exp.objective.t_score = 0.3, 0.3
    exp.search.max_generations, exp.search.population_size, exp.trials.n = 1, 2, 1
    run = tmp_path / "run"
    nestplast.run_search(exp, run)
    built = subprocess.run([sys.executable, "-m", "nestplast", "build", str(run), "--json"], capture_output=True,
                           text=True, cwd=ROOT)
    assert built.returncode == 0, built.stderr
    report = subprocess.run([sys.executable, "-m", "nestplast.report", str(run), "--json"], capture_output=True,
                            text=True, cwd=ROOT)
    got, reported = json.loads(built.stdout), json.loads(report.stdout)
    assert got["module"] == reported["nest_models"]["path"]
    assert got["synapse_models"] == reported["nest_models"]["synapse_models"]
    assert got["best_nest_params"] == reported["best_nest_params"]
    text = subprocess.run([sys.executable, "-m", "nestplast", "build", str(run)], capture_output=True, text=True,
                          cwd=ROOT)
    example = textwrap.dedent(text.stdout.split("weights of its Wmax's sign):\n", 1)[1])
    ran = subprocess.run([sys.executable, "-c", example + "\nprint(nest.GetDefaults('my_IE')['Wmax'])"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0 and float(ran.stdout.split()[-1]) == reported["best_nest_params"]["IE"]["Wmax"], ran.stderr
    # a run with no rule yet (every evaluation out of time): the example printed the rule's defaults
    # (Wmax > 0, which NEST refuses with inhibitory weights) as if they were the run's rule
    exp.objective.max_wall_s = 1e-6
    nestplast.run_search(exp, tmp_path / "failed")
    failed = subprocess.run([sys.executable, "-m", "nestplast", "build", str(tmp_path / "failed")],
                            capture_output=True, text=True, cwd=ROOT)
    assert failed.returncode == 0 and f"warning: {tmp_path / 'failed'} has no rule yet" in failed.stderr, failed.stderr
    assert "no rule yet: nestplast.nest_settings(RUN, theta)[type]" in failed.stdout, failed.stdout
    # a best rule that changes no weight (here every candidate: only time constants searched, the
    # coefficients at their start 0) was handed over as "the run's best rule" without a word
    exp.objective.max_wall_s = 60.0
    exp.rule.search = ["tau_pre", "tau_post"]
    lines = []
    nestplast.run_search(exp, tmp_path / "inert", progress=lines.append)
    said = "changes no weight on IE (every update 0, e.g. all its coefficients 0): in a model of your own it is a static"
    assert f"warning: the best rule {said}" in lines[-1], lines[-1]
    inert = subprocess.run([sys.executable, "-m", "nestplast", "build", str(tmp_path / "inert")], capture_output=True,
                           text=True, cwd=ROOT)
    assert inert.returncode == 0 and f"warning: the run's best rule {said}" in inert.stderr, inert.stderr
    reported = subprocess.run([sys.executable, "-m", "nestplast.report", str(tmp_path / "inert"), "--no-plots"],
                              capture_output=True, text=True, cwd=ROOT)
    assert f"warning: the best rule {said}" in reported.stdout, reported.stdout
    assert "changes no weight" not in text.stdout + text.stderr  # the learning run's rule: no such word
    assert "trials.w_max_scale" not in text.stdout + text.stderr + report.stdout  # its trials kept network.w_max
    # a fit's folder: refused without the command that builds the fit's rule
    fit = tmp_path / "fit"
    from nestplast.store import RunStore

    RunStore.create(fit, experiment={"rule": "taylor"}, seed=1, meta={"kind": "infer"}).close()
    (fit / "fit.json").write_text(json.dumps({"rule": "taylor", "mask": "post:100,post:011", "nest_params": {}}))
    refused = subprocess.run([sys.executable, "-m", "nestplast", "build", str(fit)], capture_output=True, text=True,
                             cwd=ROOT)
    assert refused.returncode == 2 and (f"{fit} holds an inference, whose module is its rule's: python -m nestplast "
                                        f"build taylor --mask post:100,post:011, then nest.CopyModel with the "
                                        f"nest_params of {fit / 'fit.json'}") in refused.stderr, refused.stderr
    # what is not a run folder, named as such: read as a rule name or file, it said "unknown rule",
    # "cannot read the rule file" or a codec error
    empty = tmp_path / "empty"
    empty.mkdir()
    for given, message in [(empty, f"{empty} is a folder that holds no run (no results.sqlite)"),
                           (tmp_path / "nope" / "run", f"{tmp_path / 'nope' / 'run'}: no such file or folder"),
                           (run / "results.sqlite", f"{run / 'results.sqlite'} is a run's database: give the run's "
                                                    f"folder, {run}")]:
        wrong = subprocess.run([sys.executable, "-m", "nestplast", "build", str(given)], capture_output=True, text=True,
                               cwd=ROOT)
        assert wrong.returncode == 2 and message in wrong.stderr, wrong.stderr
    with pytest.raises(UserRuleError, match="is no rule file: a NESTML file is text"):
        rule_from_file(run / "results.sqlite")
    refused = subprocess.run([sys.executable, "-m", "nestplast", "build", str(run), "--mask", "pre:000"],
                             capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "--mask: a run's module is the one it ran with" in refused.stderr
    # the experiment file itself: named as such (the hint was to read it as a NESTML file)
    (tmp_path / "exp.toml").write_text("")
    refused = subprocess.run([sys.executable, "-m", "nestplast", "build", "exp.toml"], capture_output=True, text=True,
                             cwd=tmp_path)
    assert refused.returncode == 2 and "exp.toml is an experiment file, not a rule" in refused.stderr, refused.stderr


def test_a_process_waiting_for_another_ones_build_says_so(tmp_path, capsys):
    """Under mpiexec, when rank 1 took the cache's lock and compiled, rank 0 (the one that prints)
    waited without a word: 20 s, or minutes for a large rule, that looked like a hang."""
    import fcntl
    import threading

    from nestplast.builder import cache_lock

    held = open(tmp_path / "k.lock", "w")
    fcntl.flock(held, fcntl.LOCK_EX)  # the other process, building
    entered = threading.Event()

    def wait():
        with cache_lock(tmp_path, "k", "a rule", waiting="nestplast: a rule is being compiled by another process"):
            entered.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    said, deadline = "", time.monotonic() + 60  # until it has found the lock taken (not a fixed sleep: a slow
    while "being compiled by another process" not in said and time.monotonic() < deadline:  # machine's thread
        said += capsys.readouterr().err                                                      # may not have begun)
        time.sleep(0.02)
    assert said.strip() == "nestplast: a rule is being compiled by another process"
    assert not entered.is_set()  # it waits for the other build
    fcntl.flock(held, fcntl.LOCK_UN)
    held.close()
    waiter.join(10)
    assert entered.is_set()
    with cache_lock(tmp_path, "k", "a rule", waiting="never said"):  # free: no word
        pass
    assert "never said" not in capsys.readouterr().err
