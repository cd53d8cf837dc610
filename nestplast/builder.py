"""Compile NESTML neuron + synapse sources into a NEST extension module, once.

``build(rule, neuron)`` returns a :class:`Module`: the absolute path to give ``nest.Install`` and
the NEST model names to use. Modules are cached under a hash of the sources, the code-generation
options and the NEST installation, so a second request returns at once without the compiler.
Several processes (MPI ranks) asking for the same module at once are safe: one compiles under a
file lock, the others wait, and a module only appears in the cache, by an atomic rename, once it
is complete.

Works against the PyPI wheel of NEST, whose own ``nest-config`` prints the paths of the machine
that built the wheel (a working one is written next to the cache), and against a NEST built from
source with a working ``nest-config``.

Command line::

    python -m nestplast build doublet --neuron iaf_psc_exp [--json]
    python -m nestplast build my_rule.nestml          # your own NESTML synapse
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .errors import UserError
from .neurons import Neuron, get_neuron
from .rules import Rule, UnknownRuleError, get_rule
from .user_rules import rule_from_file

# Bump when the way modules are generated changes, so that old cache entries are not reused.
# 2: modules against the wheel are compiled with -DNDEBUG.
# 3: without the plain neuron that NESTML generates beside the paired one.
BUILD_FORMAT = 3

# Flags for extension modules against the wheel: it was built with the old libstdc++ string ABI,
# and the module's NEST symbols resolve at load time from nestkernel_api.so (no libnest to link).
# -DNDEBUG as the wheel itself (its own nest-config says "-O3 -DNDEBUG"): without it the asserts
# in NEST's headers (RingBuffer, Time, kernel()) ran in every step of every neuron, a third of
# the NESTML neuron's update (measured: 243 instructions per step, 138 for NEST's iaf_psc_exp).
WHEEL_CFLAGS = "-D_GLIBCXX_USE_CXX11_ABI=0 -fopenmp -O2 -DNDEBUG -std=c++20"


class BuildError(UserError):
    """NESTML code generation or compilation failed (the message names the source file), or the
    installed NEST or NESTML is not one nestplast can build with."""


@dataclass(frozen=True)
class Module:
    """A compiled NEST module: ``path`` (absolute, no ``.so``) is what ``nest.Install`` takes."""

    path: str
    name: str
    neuron_model: str
    synapse_models: dict[str, str]

    @property
    def synapse_model(self) -> str:
        """The NEST synapse model name, for a module built from one rule."""
        if len(self.synapse_models) != 1:
            raise ValueError(f"module {self.name} holds several synapse models: take one by its rule's name, "
                             f"module.synapse_models[name], name one of {sorted(self.synapse_models)}")
        return next(iter(self.synapse_models.values()))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dir(cls, folder: Path) -> Module | None:
        """The module built into ``folder`` (a cache entry), or None if there is none (yet), or no
        longer: a library deleted since (a scratch purge, a partial copy) is built again."""
        meta = Path(folder) / "module.json"
        if not meta.is_file():
            return None
        data = json.loads(meta.read_text())
        if not (Path(folder) / f"{data['name']}.so").is_file():
            return None
        return cls(path=str(Path(folder) / data["name"]),  # the cache may have moved since it was built
                   name=data["name"], neuron_model=data["neuron_model"], synapse_models=data["synapse_models"])


def cache_dir() -> Path:
    """Where modules are cached: ``$NESTPLAST_CACHE``, or ``~/.cache/nestplast`` (``$XDG_CACHE_HOME/nestplast``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nestplast"
    root = os.environ.get("NESTPLAST_CACHE") or default
    return Path(root).expanduser().resolve()


@contextlib.contextmanager
def cache_lock(folder: Path, key: str, what: str, waiting: str | None = None) -> Iterator[None]:
    """Hold ``folder/<key>.lock`` while ``what`` is built into the cache: one process builds it, the
    others wait here (saying ``waiting`` on stderr, where given) and then find it built. Raises
    :class:`BuildError` where the cache cannot be written to (read-only, shared, a path that is a file)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / f"{key}.lock", "w")  # closed by the with below
    except OSError as err:
        raise BuildError(f"{what} is not in the cache {folder}, and it cannot be built there: "
                         f"{err.strerror or err} ({err.filename}). Set NESTPLAST_CACHE to a folder you can "
                         "write to (what was built in the old one is not found there)") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process builds it (MPI rank 1 won the lock: rank 0 said nothing)
            if waiting:
                print(waiting, file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --------------------------------------------------------------------------- NEST installation

def _nest_package_dir() -> Path:
    spec = importlib.util.find_spec("nest")
    if spec is None or spec.origin is None:
        raise BuildError("NEST is not installed in this Python (pip install nest-simulator)")
    return Path(spec.origin).resolve().parent


def read_nest_config(exe: Path | str, option: str) -> str:
    """What ``exe option`` prints, or "" where it cannot run or hangs (a nest-config whose
    interpreter is gone ended the build in a raw OSError): the callers pass such a one over."""
    try:
        out = subprocess.run([str(exe), option], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _working_nest_config() -> Path | None:
    """A ``nest-config`` whose prefix and include folder exist on this machine, if there is one."""
    package = _nest_package_dir()
    candidates = [os.environ.get("NEST_CONFIG"),
                  package.parents[3] / "bin" / "nest-config",  # <prefix>/lib/pythonX.Y/site-packages/nest
                  Path(sysconfig.get_path("scripts")) / "nest-config",
                  shutil.which("nest-config")]
    for candidate in filter(None, candidates):
        exe = Path(candidate)
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            continue
        prefix = Path(read_nest_config(exe, "--prefix"))
        includes = [Path(flag[2:]) for flag in read_nest_config(exe, "--includes").split() if flag.startswith("-I")]
        if prefix.is_dir() and includes and all(p.is_dir() for p in includes):
            return exe
    return None


def _wheel_nest_config(target: Path) -> Path:
    """Write a ``nest-config`` for the PyPI wheel, whose shipped one points at the build machine."""
    package = _nest_package_dir()
    include = package / "include" / "nest"
    if not include.is_dir():
        raise BuildError(f"no working nest-config and no NEST headers under {include}: "
                         "install a NEST built from source, or the nest-simulator wheel")
    script = target / "bin" / "nest-config"
    text = f"""#!/bin/sh
# Written by nestplast: the nest-simulator wheel's own nest-config prints its build machine's paths.
for option in "$@"; do
  case "$option" in
    --prefix|--exec-prefix) echo "{package}" ;;
    --includes) echo "-I{include}" ;;
    --cflags) echo "{WHEEL_CFLAGS}" ;;
    --libs) echo "-fopenmp" ;;
    --compiler|--compiler-name) echo "g++" ;;
    --static-libraries) echo "OFF" ;;
    --libdir) echo "lib" ;;
    --version) echo "{nest_version()}" ;;
    *) echo "" ;;
  esac
done
"""
    if not script.exists() or script.read_text() != text:
        script.parent.mkdir(parents=True, exist_ok=True)
        tmp = script.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, script)  # atomic: ranks writing the same file never see half of it
    return target


def nest_path() -> Path:
    """The folder NESTML takes as ``nest_path`` (it runs ``<nest_path>/bin/nest-config``)."""
    exe = _working_nest_config()
    if exe is not None:
        return exe.parent.parent
    package = hashlib.sha256(str(_nest_package_dir()).encode()).hexdigest()[:12]
    return _wheel_nest_config(cache_dir() / "nest-config" / package)


@functools.cache
def nest_version() -> str:
    """NEST's version, e.g. "3.10.0" (NESTML generates code for that version's kernel API)."""
    try:
        return importlib.metadata.version("nest-simulator")
    except importlib.metadata.PackageNotFoundError:  # a source build that pip does not know
        exe = _working_nest_config()
        version = read_nest_config(exe, "--version") if exe else ""
        if not re.fullmatch(r"\d+\.\d+(\.\d+)?", version):
            raise BuildError(f"cannot tell the version of the NEST in {_nest_package_dir()}: "
                             "set NEST_CONFIG to its nest-config") from None
        return version


# --------------------------------------------------------------------------- NESTML installation

# nestplast's changes to NESTML's NEST templates, marked "nestplast:" in the files: NEST's built-in
# STDP synapses see the spikes of a neuron generated with a rule, a rule connected to the wrong
# neuron raises a NEST error instead of exiting the process, @homogeneous parameters really are
# common properties, coincident pre and post spikes are handled as in NEST's own STDP synapses,
# a weight whose sign differs from Wmax is refused, and a neuron keeps its incoming spikes in one
# buffer as NEST's own neurons do (one cache line per event). Only the changed files are kept here; the
# manifest records the hash of the stock file each was made from.
OVERLAY_DIR = Path(__file__).resolve().parent / "templates" / "nest"
OVERLAY_MANIFEST = OVERLAY_DIR.parent / "nest.stock.sha256"


def _nestml_version() -> str:
    try:
        return importlib.metadata.version("nestml")
    except importlib.metadata.PackageNotFoundError:
        raise BuildError("NESTML is not installed in this Python (pip install 'nestml==9.0.*')") from None


def nestml_templates_dir() -> Path:
    """The NEST templates of the installed NESTML (found without importing it, which is slow)."""
    spec = importlib.util.find_spec("pynestml")
    if spec is None or spec.origin is None:
        raise BuildError("NESTML is not installed in this Python (pip install 'nestml==9.0.*')")
    return Path(spec.origin).resolve().parent / "codegeneration" / "resources_nest" / "point_neuron"


@functools.cache
def nestml_model(kind: str, model: str) -> Path:
    """A model that ships with the installed NESTML, e.g. ``nestml_model("neurons",
    "iaf_psc_exp_neuron")``. pip installs them as data files under the environment's prefix
    (``<venv>/models/neurons/``); the package's file list says where."""
    parts = ("models", kind, f"{model}.nestml")
    _nestml_version()  # a clear error if NESTML is missing
    for file in importlib.metadata.distribution("nestml").files or ():
        if file.parts[-3:] == parts and Path(file.locate()).is_file():
            return Path(file.locate()).resolve()
    for prefix in dict.fromkeys([sysconfig.get_path("data"), sys.prefix]):  # no file list (e.g. some distro packages)
        if Path(prefix, *parts).is_file():
            return Path(prefix, *parts)
    raise BuildError(f"the installed NESTML {_nestml_version()} has no {'/'.join(parts)}: "
                     "nestplast needs the models that ship with nestml 9.0")


@functools.cache
def _template_files() -> dict[str, bytes]:
    """NESTML's NEST templates with nestplast's overlay on top: relative path -> content."""
    stock = nestml_templates_dir()
    files = {p.relative_to(stock).as_posix(): p.read_bytes() for p in sorted(stock.rglob("*.jinja2"))}
    for line in OVERLAY_MANIFEST.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        expected, name = line.split(maxsplit=1)
        found = files.get(name)
        if found is None or hashlib.sha256(found).hexdigest() != expected:
            raise BuildError(
                f"the installed NESTML {_nestml_version()} {'lacks' if found is None else 'has another version of'} "
                f"the template {name} ({stock}) from which nestplast/templates/nest/{name} was made: install "
                "nestml 9.0.0 (pip install 'nestml==9.0.0'), or port the changes marked 'nestplast:' to the new "
                f"file and record its sha256 in {OVERLAY_MANIFEST.name}")
        files[name] = (OVERLAY_DIR / name).read_bytes()
    return files


@functools.cache
def _templates_digest() -> str:
    digest = hashlib.sha256()
    for name, content in sorted(_template_files().items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()


def templates_dir() -> Path:
    """The template folder given to NESTML: the installed NESTML's templates with nestplast's
    overlay, assembled once into the cache under the digest of its content. Concurrent callers
    (MPI ranks) each write a private copy; the first atomic rename wins, the others drop theirs."""
    final = cache_dir() / "templates" / _templates_digest()[:16]
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    draft = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp", dir=final.parent))
    try:
        for name, content in _template_files().items():
            (draft / name).parent.mkdir(parents=True, exist_ok=True)
            (draft / name).write_bytes(content)
        os.rename(draft, final)
    except OSError:
        if not final.is_dir():  # not "another process was first"
            raise
    finally:
        shutil.rmtree(draft, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- building

def _sanitise(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def _post_ports(rule: Rule) -> list:
    """The synapse's ports from the postsynaptic neuron: its spikes, and a continuous port
    ``<name>_post`` for each state variable the rule reads (``[port, neuron variable]``)."""
    return ["post_spikes"] + [[f"{name}_post", name] for name in rule.post_inputs]


def _codegen_options(rules: Sequence[Rule], neuron: Neuron, templates: str) -> dict:
    options = {
        "templates": {"path": templates,
                      "model_templates": {"neuron": ["@NEURON_NAME@.cpp.jinja2", "@NEURON_NAME@.h.jinja2"],
                                          "synapse": ["@SYNAPSE_NAME@.h.jinja2"]},
                      "module_templates": ["setup"]},
        "neuron_synapse_pairs": [{"neuron": neuron.model,
                                  "synapses": {r.synapse: {"post_ports": _post_ports(r)} for r in rules}}],
        "weight_variable": {r.synapse: r.weight_variable for r in rules},
        # Keep the traces in the synapse: NESTML would otherwise move x_post and tau_post into the
        # neuron, and tau_post could no longer differ between CopyModel copies of the rule.
        "strictly_synaptic_vars": {r.synapse: list(r.synaptic_traces) for r in rules},
    }
    if any(r.post_inputs for r in rules):
        # A postsynaptic spike's update reads the neuron's variables as they were at that spike
        # (kept in its spike history), not from a buffer of every step (NESTML's default: costly).
        # Only set for such rules, so that the other modules' cache keys stay as they were.
        options["continuous_state_buffering_method"] = "post_spike_based"
    return options


def _post_neuron(rules: Sequence[Rule], neuron: Neuron | str) -> Neuron:
    neuron = get_neuron(neuron) if isinstance(neuron, str) else neuron
    if any(r.post_inputs for r in rules):  # the neuron carries the state variables these rules read
        neuron = neuron.with_rule_inputs()
    return neuron


def cached(rules: Sequence[Rule], neuron: Neuron | str) -> Module | None:
    """The module :func:`build` gives for ``rules`` and ``neuron`` where it is in the cache
    already, else None: it never compiles (the report names the models of a run's rule with it)."""
    return _named_for(Module.from_dir(cache_dir() / "modules" / module_key(rules, _post_neuron(rules, neuron))), rules)


def _named_for(module: Module | None, rules: Sequence[Rule]) -> Module | None:
    """``module`` with its synapse models keyed by the names ``rules`` go by now: the cache is keyed
    by what compiles, not by a rule's name, and a user's own label for a file compiled before under
    another name found no model (KeyError)."""
    if module is None:
        return None
    by_synapse = {unpaired_name(model): model for model in module.synapse_models.values()}
    return replace(module, synapse_models={r.name: by_synapse[r.synapse] for r in rules})


def module_key(rules: Sequence[Rule], neuron: Neuron) -> str:
    """Hash of everything that determines the compiled module."""
    payload = {
        "format": BUILD_FORMAT,
        "sources": {neuron.model: neuron.source, **{r.synapse: r.source for r in rules}},
        # the templates as assembled (installed NESTML + overlay), by content, not by their folder
        "options": _codegen_options(rules, neuron, templates=_templates_digest()),
        "nest": [nest_version(), str(_nest_package_dir())],
        "nestml": _nestml_version(),
        "python": sys.version_info[:2],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# NESTML keeps the plain neuron beside the paired one it derives; a module holds only the paired
# neuron (which runs unconnected to the rule as well), so the plain one is dropped right after the
# pairing: it cost a quarter of every build (its code generation, ODE analysis and C++ file).
_GENERATE = """
import json, sys
from pynestml.frontend.frontend_configuration import FrontendConfiguration
from pynestml.frontend.pynestml_frontend import generate_nest_target
from pynestml.transformers.synapse_post_neuron_transformer import SynapsePostNeuronTransformer

pair = SynapsePostNeuronTransformer.transform

def pair_and_drop_the_plain_neurons(self, models, metadata):
    plain = {p["neuron"] + FrontendConfiguration.suffix for p in self.get_option("neuron_synapse_pairs")}
    return [m for m in pair(self, models, metadata) if m.get_name() not in plain]

SynapsePostNeuronTransformer.transform = pair_and_drop_the_plain_neurons
generate_nest_target(**json.loads(sys.argv[1]))
"""

# NESTML reports problems as "[n,model, ERROR, [line:col;line:col]]: message".
_NESTML_ERROR = re.compile(r"\[\d+,\s*([A-Za-z0-9_]+),\s*ERROR,\s*\[(\d+):(\d+);[^\]]*\]\]:\s*(.*)")
_COMPILER_ERROR = re.compile(r"^(\S+?):(\d+):(\d+): (?:fatal )?error: (.*)$", re.M)
# A build tool missing from PATH, as Python (NESTML runs cmake and make), a shell or CMake says it.
_MISSING_TOOL = ((re.compile(r"FileNotFoundError: \[Errno 2\] No such file or directory: '([\w+-]+)'"), None),
                 (re.compile(r"^(?:\S*sh|make(?:\[\d+\])?): (?:line )?(?:\d+: )?([\w.+-]+): "
                             r"(?:[Cc]ommand not found|not found|No such file or directory)$", re.M), None),
                 (re.compile(r"CMAKE_C(?:XX)?_COMPILER:\s+(\S+)\s+is not a full path and was not found"), None),
                 (re.compile(r"No CMAKE_C(?:XX)?_COMPILER could be found"), "a C++ compiler"),
                 (re.compile(r"unable to find a build program corresponding to \"Unix Makefiles\""), "make"))


def _syntax_errors(path: Path) -> int:
    """How many syntax errors NESTML's parser finds in the file ``path``."""
    from antlr4 import CommonTokenStream, FileStream
    from pynestml.generated.PyNestMLLexer import PyNestMLLexer
    from pynestml.generated.PyNestMLParser import PyNestMLParser

    lexer = PyNestMLLexer(FileStream(str(path), encoding="utf-8"))
    lexer.removeErrorListeners()
    parser = PyNestMLParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.nestMLCompilationUnit()
    return parser.getNumberOfSyntaxErrors()


def _explain_failure(log: str, sources: dict[str, Path], copies: dict[str, Path]) -> str:
    """The first NESTML or compiler errors in ``log``, each with the source file it came from
    (``sources``: the user's names of the files ``copies`` were compiled from, by model)."""
    problems = []
    errors = _NESTML_ERROR.findall(log)
    if any(model == "GLOBAL" for model, *_ in errors):  # a syntax error: NESTML names no model, so parse each file
        unparsed = next((m for m, copy in copies.items() if _syntax_errors(copy)), "GLOBAL")
        errors = [(unparsed if model == "GLOBAL" else model, *rest) for model, *rest in errors]
    for model, line, col, message in errors:
        src = sources.get(unpaired_name(model), model)
        problems.append(f"{src}:{line}:{col}: error: {message.strip()}")
    for path, line, _col, message in _COMPILER_ERROR.findall(log):
        model = next((m for m in sources if m in Path(path).name), None)
        where = f" (generated from {sources[model]})" if model else ""
        problems.append(f"{Path(path).name}:{line}: error: {message.strip()}{where}")
    if not problems and (tool := _missing_tool(log)):
        problems = [_not_on_path(tool)]
    if not problems:  # the end of the log, where Python's traceback ends in the exception that stopped it
        tail = [ln for ln in log.strip().splitlines() if ln.strip()][-10:]
        return "\n  ".join(["no error message recognised; the end of the build log:", *tail])
    return "\n  ".join(dict.fromkeys(problems[:10]))


def _not_on_path(tool: str) -> str:
    build_tool = tool in ("cmake", "make", "a C++ compiler") or tool.endswith(("g++", "gcc", "c++", "cc", "clang"))
    return f"{tool} is not on PATH" + (", and compiling a module needs cmake, make and a C++ compiler: install "
                                       "them (Debian/Ubuntu: apt-get install cmake make g++) or put them on PATH"
                                       if build_tool else "")


def _absent_build_tool(nest: Path) -> str | None:
    """The first of cmake, make and the C++ compiler of the NEST at ``nest`` (its ``nest_path``)
    that is not on PATH: found before NESTML spends 15-20 s generating code, not in its log after."""
    compiler = read_nest_config(nest / "bin" / "nest-config", "--compiler") or "g++"
    return next((tool for tool in ("cmake", "make", compiler) if shutil.which(tool) is None), None)


def _missing_tool(log: str) -> str | None:
    """The build tool (cmake, make, a C++ compiler) that ``log`` says is not on PATH, if any."""
    for pattern, tool in _MISSING_TOOL:
        if found := pattern.search(log):
            return tool or found.group(1)
    return None


def unpaired_name(model: str) -> str:
    """The NESTML model a paired model was generated from: ``iaf_psc_exp_neuron`` of
    ``iaf_psc_exp_neuron__with_doublet_synapse``, ``doublet_synapse`` of its synapse."""
    return model.split("__with_")[0]


def _paired_names(rules: Sequence[Rule], neuron: Neuron, target: Path) -> tuple[str, dict[str, str]]:
    """NESTML's names for the paired neuron and each rule's synapse: ``<neuron>__with_<synapse>``
    and ``<synapse>__with_<neuron>`` for one rule; with several, the neuron carries every synapse
    (``<neuron>__with_<a>_and_<b>``) and each synapse is named after that neuron. Read back from
    the generated headers, so that the order NESTML joins the names in cannot be got wrong."""
    if len(rules) == 1:
        return f"{neuron.model}__with_{rules[0].synapse}", {rules[0].name: f"{rules[0].synapse}__with_{neuron.model}"}
    candidates = [h.stem for h in target.glob(f"{neuron.model}__with_*.h")]
    if len(candidates) != 1:
        raise BuildError(f"expected one paired neuron {neuron.model}__with_... among the generated files, "
                         f"found {candidates or 'none'}")
    paired = candidates[0]
    return paired, {r.name: f"{r.synapse}__with_{paired}" for r in rules}


def _compile(rules: Sequence[Rule], neuron: Neuron, name: str, workdir: Path) -> Path:
    """Generate and compile the module in ``workdir``; return the folder holding ``<name>.so``."""
    nest = nest_path()
    if tool := _absent_build_tool(nest):
        raise BuildError(f"building module {name} failed:\n  {_not_on_path(tool)}")
    src_dir, target, install = workdir / "nestml", workdir / "target", workdir / "install"
    src_dir.mkdir()
    sources = {neuron.model: src_dir / f"{neuron.model}.nestml"}
    sources[neuron.model].write_text(neuron.source)
    for rule in rules:
        sources[rule.synapse] = src_dir / f"{rule.synapse}.nestml"
        sources[rule.synapse].write_text(rule.source)
    options = {**_codegen_options(rules, neuron, str(templates_dir())), "nest_path": str(nest),
               "nest_version": "v" + nest_version()}
    args = {"input_path": [str(p) for p in sources.values()], "target_path": str(target),
            "install_path": str(install), "module_name": name, "logging_level": "WARNING",
            "codegen_opts": options}
    env = {**os.environ, "PYNEST_QUIET": "1", "MAKEFLAGS": f"-j{os.cpu_count() or 1}"}
    # its own process group: NESTML runs cmake and make, whose compilers went on (orphaned, into a
    # deleted folder) when only this process was stopped (kill PID, a batch system, Ctrl-C in Python)
    with subprocess.Popen([sys.executable, "-c", _GENERATE, json.dumps(args)], cwd=workdir, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    log = stdout + "\n" + stderr
    (workdir / "build.log").write_text(log)
    if proc.returncode != 0 or not (install / f"{name}.so").is_file():
        # Name the files the user knows (a user's rule file, NESTML's neuron), not the temporary copies.
        by_synapse = {r.synapse: r for r in rules}
        user_sources = {model: (neuron.path if model == neuron.model else by_synapse[model].path
                                or f"<{model} source of rule '{by_synapse[model].name}'>")
                        for model in sources}
        raise BuildError(f"building module {name} failed:\n  {_explain_failure(log, user_sources, sources)}")
    shutil.move(str(install / f"{name}.so"), workdir / f"{name}.so")
    return workdir


def named_rule(name: str | os.PathLike[str], mask: str | None = None, weight: str | None = None) -> Rule:
    """A built-in rule by name, or the rule of the user's NESTML file ``name`` (a path: ending in
    ``.nestml``, or with a folder) with its weight variable ``weight`` (default ``w``), for one's
    own model: nothing searched (see :func:`~nestplast.user_rules.rule_from_file`)."""
    if isinstance(name, os.PathLike) or str(name).endswith(".nestml") or os.sep in str(name):
        if mask is not None:
            raise ValueError(f"a mask is for the taylor and reward rules, not for your own file {name}")
        return rule_from_file(name, weight_variable=weight or "w")
    if weight is not None:
        raise ValueError(f"--weight names the weight variable of your own NESTML file, not of the rule {name}")
    try:
        return get_rule(str(name), mask=mask)
    except UnknownRuleError as err:
        if str(name).lower().endswith(".toml"):  # the hint below sent an experiment on to be read as NESTML
            raise UnknownRuleError(f"{err}. {name} is an experiment file, not a rule: build the rule it names "
                                   "(rule.name), or, after a run of it, the run's own module (build RUN_DIR)") from None
        if str(name).lower().endswith((".npz", ".npy", ".csv", ".json", ".sqlite")):  # data: the hint led to "no rule file"
            raise UnknownRuleError(f"{err}. {name} is a data file, not a rule: give a rule name or a NESTML synapse "
                                   "file (.nestml)") from None
        if Path(name).is_file():  # MyRule.NESTML, rule.txt: read as a built-in rule's name
            raise UnknownRuleError(f"{err}. {name} is a file, but a rule file is read as one only where its name ends "
                                   f"in .nestml or holds a folder (e.g. .{os.sep}{name})") from None
        raise


RuleLike = Rule | str | os.PathLike[str]  # a rule, a built-in rule's name, or the path of a NESTML file


def build(rules: RuleLike | Sequence[RuleLike], neuron: str | Neuron = "iaf_psc_exp", *, force: bool = False,
          quiet: bool = True) -> Module:
    """Compile ``rules`` (one or several plasticity rules, their names, or paths of your own NESTML
    synapse files, ``"my_rule.nestml"``) with the postsynaptic ``neuron`` into one NEST module, or
    return it from the cache. Rules that are to act on one neuron go into one module: each module
    has its own paired neuron. Modules of other rules install side by side in one kernel; two
    modules of one rule (two masks, say) name the same models, and NEST refuses the second.

    The module holds ``<neuron>__with_<synapse>`` and ``<synapse>__with_<neuron>`` for each rule
    (not NESTML's plain ``<neuron>``, which it generates beside them);
    the neuron has its own Poisson drive where it can (``drive_rate``, ``drive_weight``: off by
    default; see :func:`~nestplast.neurons.add_internal_drive`).
    Raises :class:`BuildError` with the NESTML or compiler message and its source file.
    """
    rules = [rules] if isinstance(rules, (Rule, str, os.PathLike)) else list(rules) if isinstance(rules, Sequence) else [rules]
    if wrong := [r for r in rules if not isinstance(r, (Rule, str, os.PathLike))]:  # build(3): "int is not iterable"
        raise TypeError(f"build: expected a rule (get_rule(...)), a rule's name or the path of a NESTML file, or a "
                        f"list of them; got {wrong[0]!r} ({type(wrong[0]).__name__})")
    rules = [r if isinstance(r, Rule) else named_rule(r) for r in rules]
    if not rules:
        raise BuildError("build: no rule given")
    synapses = [r.synapse for r in rules]
    twice = sorted({s for s in synapses if synapses.count(s) > 1})  # one model per name: the others would be lost
    if twice:
        raise BuildError(f"build: {synapses.count(twice[0])} of the rules compile to the synapse model {twice[0]} "
                         "(e.g. one taylor rule with two masks); a module holds each model once: give them "
                         "one mask, or build them into separate kernels")
    neuron = _post_neuron(rules, neuron)
    key = module_key(rules, neuron)
    name = _sanitise(f"{'_'.join(r.name for r in rules)}_{neuron.name}_{key[:8]}module")
    modules = cache_dir() / "modules"
    final = modules / key
    if not force and (module := Module.from_dir(final)) is not None:
        return _named_for(module, rules)  # fast path: no lock, no compiler; the folder only appears complete

    rule_names = ", ".join(r.name for r in rules)
    waiting = None if quiet else (f"nestplast: {rule_names} with {neuron.name} is being compiled by another process "
                                  f"(once; cached in {final}): waiting for it")
    with cache_lock(modules, key, name, waiting):
        if not force and (module := Module.from_dir(final)) is not None:
            return _named_for(module, rules)
        if not quiet:
            print(f"nestplast: compiling {rule_names} with {neuron.name} (once; cached in {final})", file=sys.stderr)
        start = time.perf_counter()
        for stale in modules.glob(f"{key}.tmp*"):  # a build of this module killed before it could clean up
            shutil.rmtree(stale, ignore_errors=True)  # (none runs now: this one holds the module's lock)
        workdir = Path(tempfile.mkdtemp(prefix=f"{key}.tmp", dir=modules))
        try:
            _compile(rules, neuron, name, workdir)
            shutil.rmtree(workdir / "target" / "CMakeFiles", ignore_errors=True)  # objects: MBs, not needed
            paired, synapses = _paired_names(rules, neuron, workdir / "target")
            module = Module(path=str(final / name), name=name, neuron_model=paired, synapse_models=synapses)
            meta = {**module.to_json(), "build_seconds": round(time.perf_counter() - start, 2)}
            meta.pop("path")
            (workdir / "module.json").write_text(json.dumps(meta, indent=2))
            if final.exists():  # force=True: replace the old build
                shutil.rmtree(final)
            os.rename(workdir, final)
        except BaseException as err:
            failed = modules / f"{key}.failed.log"
            kept = (workdir / "build.log").exists()
            if kept:
                shutil.copy(workdir / "build.log", failed)
            shutil.rmtree(workdir, ignore_errors=True)
            if kept and isinstance(err, BuildError):  # the message shows a few lines: say where the rest is
                raise BuildError(f"{err}\n  the whole build log: {failed}") from None
            raise
    return _named_for(Module.from_dir(final), rules)
