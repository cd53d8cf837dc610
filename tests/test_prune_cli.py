"""The pruning command line (python -m nestplast prune, also python -m nestplast.prune): JSON
and text output, the files it writes, bad input in one line with exit code 2, output paths
checked before any work, and warnings about unstable pruned networks."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nestplast.commands.prune import main
from nestplast.pruning_measures import eigenvalue_error, slow_eigenvalue_error

ROOT = Path(__file__).resolve().parent.parent
DISPATCHER = ("-m", "nestplast", "prune")
MODULE = ("-m", "nestplast.prune")


def run_cli(*args, entry=MODULE, timeout=300):
    return subprocess.run([sys.executable, *entry, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def as_options(settings: dict) -> list[str]:
    """summary.json's settings given back as command-line options."""
    options = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            options += [flag] if value else []
        elif isinstance(value, list):
            options += [flag, ",".join(map(str, value))]
        elif name != "nestplast":
            options += [flag, str(value)]
    return options


def rejected(capsys, *args) -> str:
    """Run the command in this process (the error paths need no fresh interpreter), check that it
    failed with exit code 2 and one line on stderr, and return that line."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_cli_json_prints_one_object(tmp_path):
    out = run_cli("--nodes", 60, "--seed", 3, "--keep", 0.3, "--duration", 30, "--json", "--out", tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)  # the whole of stdout is one JSON object
    assert summary["keep"] == 0.3 and summary["slowest"] == 10 and summary["diagonal"] == "row-sum"
    assert set(summary["rules"]) == {"noise", "magnitude", "uniform"}
    for rule in summary["rules"].values():
        assert 0 < rule["eigenvalue_error"] <= rule["eigenvalue_error_max"]
        assert 0 < rule["eigenvalue_error_slowest"] <= rule["eigenvalue_error_max"]
        assert 0 < rule["trajectory_error"] < 2 and 0 < rule["decay_trajectory_error"] < 2
        assert 0 <= rule["rayleigh_error"] and 0.2 < rule["kept_fraction"] < 0.4
        assert rule["largest_real_eigenvalue"] < 0 and rule["stable"] and rule["stable_diagonals"] is None
    for name in ("pruned_noise.npz", "pruned_magnitude.npz", "pruned_uniform.npz", "sweep.csv",
                 "spectra.png", "sweep.png", "summary.json", "decay.csv", "decay.png"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "summary.json").read_text())
    # with what made it (the folder alone did not say how to make it again)
    settings = saved.pop("settings")
    assert saved == summary and settings["seed"] == 3 and settings["nodes"] == 60 and settings["keep"] == 0.3
    assert settings["covariance"] == "lyapunov" and "matrix" not in settings and "nestplast" in settings
    # given back as options, the settings make the same run
    rerun = run_cli(*as_options(settings), "--json", "--out", tmp_path / "again")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads((tmp_path / "again" / "summary.json").read_text()) == {**saved, "settings": settings}
    # nestplast report on the folder: "holds no nestplast run", as if it were none of nestplast's
    report = subprocess.run([sys.executable, "-m", "nestplast", "report", str(tmp_path)], capture_output=True, text=True)
    assert report.returncode == 2 and "holds the output of nestplast prune" in report.stderr, report.stderr
    assert str(tmp_path / "summary.json") in report.stderr
    # The saved matrix is the pruned one the summary measured.
    W = np.load(tmp_path / "original.npz")["W"]
    pruned = np.load(tmp_path / "pruned_noise.npz")["W"]
    assert eigenvalue_error(W, pruned).mean == pytest.approx(summary["rules"]["noise"]["eigenvalue_error"])
    assert slow_eigenvalue_error(W, pruned) == pytest.approx(
        summary["rules"]["noise"]["eigenvalue_error_slowest"])
    table = (tmp_path / "sweep.csv").read_text().splitlines()
    assert len(table) == 1 + 3 * 5  # keeps 0.5, 0.3, 0.2, 0.1, 0.05 by three rules
    assert "eigenvalue_error_slowest" in table[0].split(",")
    decay = (tmp_path / "decay.csv").read_text().splitlines()
    assert decay[0] == "time_ms,noise,magnitude,uniform" and len(decay) == 1 + 40

    # Same seed, same result; a saved matrix gives the same as the generated one.
    again = run_cli("--matrix", tmp_path / "original.npz", "--seed", 3, "--keep", 0.3, "--duration", 30, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["rules"] == summary["rules"]


def test_cli_text_table_on_the_authors_network():
    out = run_cli("--network", "authors", "--nodes", 200, "--seed", 1, "--slowest", 5, "--duration", 0,
                  "--decay-duration", 50)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("200 neurons") and "diagonal row-sum" in lines[0]
    assert lines[1].split() == ["rule", "kept", "eig", "mean", "eig", "max", "eig", "slow5", "rayleigh",
                                "trajectory", "decay", "max", "re(eig)"]
    assert [line.split()[0] for line in lines[2:]] == ["noise", "magnitude", "uniform"]
    for line in lines[2:]:
        cells = line.split()
        assert cells[6] == "-"  # the NEST trajectories were skipped
        assert float(cells[7]) > 0 and float(cells[8]) < 0


def test_both_entry_points_are_one_command():
    """python -m nestplast prune (the dispatcher) and python -m nestplast.prune (the other tests)."""
    args = ("--nodes", 30, "--keep", 0.5, "--duration", 0, "--decay-duration", 0, "--json")
    one, other = run_cli(*args, entry=DISPATCHER), run_cli(*args, entry=MODULE)
    assert one.returncode == other.returncode == 0, (one.stderr, other.stderr)
    assert json.loads(one.stdout) == json.loads(other.stdout)
    bad = run_cli("--keep", 2, entry=DISPATCHER)
    assert bad.returncode == 2 and bad.stderr == run_cli("--keep", 2, entry=MODULE).stderr


def test_cli_online_covariance_from_nest_on_a_rectified_network():
    out = run_cli("--nodes", 40, "--covariance", "nest", "--probe", 2000, "--rectified", "--inhibitory", 0.2,
                  "--keep", 0.5, "--duration", 20, "--decay-duration", 0, "--json")
    assert out.returncode == 0, out.stderr
    rules = json.loads(out.stdout)["rules"]
    assert all(0 < r["eigenvalue_error"] < 1 and 0 < r["trajectory_error"] < 2 for r in rules.values())


def test_cli_warns_about_unstable_pruned_networks(tmp_path):
    """10 % kept with the original diagonal: every pruned network is unstable (see
    test_pruning_measures); each gets one warning naming --diagonal row-sum, which then runs clean."""
    args = ("--nodes", 40, "--keep", 0.1, "--duration", 0, "--decay-duration", 0, "--json")
    out = run_cli(*args, "--diagonal", "original", "--out", tmp_path)
    assert out.returncode == 0, out.stderr
    rules = json.loads(out.stdout)["rules"]
    W = np.load(tmp_path / "original.npz")["W"]
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    # --keep's three, then one line for the sweep's other fractions, which are unstable as well
    assert len(warnings) == 4 and warnings[-1].startswith("warning: in the sweep, the networks pruned by ")
    for (rule, m), warning in zip(rules.items(), warnings[:3]):
        largest = np.linalg.eigvalsh(np.load(tmp_path / f"pruned_{rule}.npz")["W"] - np.eye(len(W))).max()
        assert m["largest_real_eigenvalue"] == pytest.approx(largest) and largest >= 0
        assert not m["stable"] and m["stable_diagonals"] == ["row-sum"]
        assert f"by the {rule} rule is unstable" in warning and "--diagonal row-sum" in warning
    fixed = run_cli(*args, "--diagonal", "row-sum")
    assert fixed.returncode == 0 and "warning" not in fixed.stderr
    assert all(m["stable"] for m in json.loads(fixed.stdout)["rules"].values())


@pytest.mark.parametrize("matrix, message", [
    (np.ones((3, 4)), "square"),
    (np.array([[0.0, np.nan], [0.0, 0.0]]), "NaN"),
    (np.array([[0.5, 0.8], [0.8, 0.5]]), "unstable"),
    (None, "no array 'W'"),
    # stable as a continuous network, but growing in NEST's step: reported as an error of 3.8e10 with
    # every eigenvalue below 0, and no word of why
    (np.full((3, 3), 1.0) - 121.0 * np.eye(3), "weight matrix has a mode NEST's step cannot integrate"),
    # ... with advice the command can follow (it has no resolution, delay or tau)
    (np.full((3, 3), 1.0) - 121.0 * np.eye(3), "(in Python, RateModel); or measure without NEST: --duration 0 and "
                                               "--covariance lyapunov"),
    # a slow, weakly damped oscillation that the delayed input tips over: "too fast", "a factor 1 >= 1"
    (np.array([[0.9997, 0.1551], [-0.1551, 0.9997]]), "the mode of W's eigenvalue 0.9997+0.1551j grows in NEST's "
                                                      "update by a factor of 1 + 5.2e-07 per step"),
])
def test_cli_rejects_bad_matrices(tmp_path, capsys, matrix, message):
    path = tmp_path / "m.npz"
    if matrix is None:
        np.savez(path, weights=np.eye(2))
    else:
        np.savez(path, W=matrix)
    assert message in rejected(capsys, "--matrix", path, "--json")


def test_cli_names_files_that_are_not_a_matrix_archive(tmp_path, capsys):
    """A text file named .npz: what is expected, not numpy's advice to load pickles. A bare .npy
    array (numpy.save) is the matrix: it was refused, though a matrix is one array."""
    np.save(tmp_path / "w.npy", np.ones((3, 4)))
    (tmp_path / "w.npz").write_text("not numpy")
    assert "weight matrix must be square (n x n), got shape (3, 4)" in rejected(capsys, "--matrix", tmp_path / "w.npy")
    message = rejected(capsys, "--matrix", tmp_path / "w.npz")
    assert "not a zip archive as numpy.savez writes" in message and "pickle" not in message
    # scipy.sparse.save_npz's arrays: "no array 'W' (found: indices, indptr, format, shape, data)", no more
    np.savez(tmp_path / "sparse.npz", indices=[0], indptr=[0, 1], format=b"csr", shape=[1, 1], data=[1.0])
    assert "a scipy.sparse file: save the dense matrix" in rejected(capsys, "--matrix", tmp_path / "sparse.npz")


@pytest.mark.parametrize("args, message", [
    (["--keep", "1.5"], "--keep"),
    (["--matrix", "/nonexistent/w.npz"], "no such file"),
    (["--nodes", "abc"], "invalid int"),
    (["--sweep", "0.5,2"], "fractions"),
    (["--sweep", ",,", "--out", "x"], "no fraction in ',,'"),  # a sweep of --keep alone, without a word
    (["--seed", "-1"], "--seed"),
    (["--p-out", "1.2"], "--p-out"),
    (["--slowest", "0"], "--slowest"),
    (["--decay-states", "0"], "--decay-states must be at least 1, got 0"),
    (["--network", "authors", "--inhibitory", "0.2"], "--inhibitory applies to --network clustered or random"),
    (["--long-range", "10"], "--long-range applies to --network authors"),
    # NEST's tracebacks ("stop must be a multiple of the resolution", "the simulation time must be finite"),
    # or a measure shown as skipped
    (["--duration", "1.25"], "--duration must be 0 (no trajectories) or a whole number of ms, at least 2"),
    (["--duration", "0.5"], "--duration must be 0 (no trajectories) or a whole number of ms"),
    (["--duration", "inf"], "--duration must be a finite number of ms, got inf"),
    (["--decay-duration", "nan"], "--decay-duration must be a finite number of ms, got nan"),
    (["--covariance", "nest", "--probe", "nan"], "--probe must be a finite number of ms, got nan"),
    (["--covariance", "nest", "--warmup", "inf"], "--warmup must be a finite number of ms, got inf"),
    (["--covariance", "nest", "--warmup", "-1"], "--warmup must be >= 0 ms, got -1"),
    # Path("") is the current directory: every file landed there
    (["--out", ""], "argument --out: an empty path; give a directory"),
])
def test_cli_rejects_bad_arguments(capsys, args, message):
    assert message in rejected(capsys, *args)


@pytest.mark.parametrize("where, message", [
    ("file", "is an existing file"),
    ("below a file", "is a file"),
    ("/proc/nestplast-out", "cannot write"),  # not even root may create folders in /proc
])
def test_cli_checks_the_output_directory_before_any_work(tmp_path, capsys, where, message):
    """A bad --out fails in one line before anything is read or computed: here the matrix is
    bad too, and it is the output directory that the error names."""
    bad_matrix = tmp_path / "m.npz"
    np.savez(bad_matrix, W=np.ones((2, 3)))
    existing = tmp_path / "results.txt"
    existing.write_text("keep me")
    out_dir = {"file": existing, "below a file": existing / "run"}.get(where, where)
    error = rejected(capsys, "--matrix", bad_matrix, "--out", out_dir)
    assert message in error and "square" not in error
    assert existing.read_text() == "keep me"


def test_a_comparison_that_compares_nothing_says_so(tmp_path):
    """An all-zero matrix has nothing to prune; three nodes' four synapses at --keep 0.2 keep none:
    every rule's errors are then the same, and the run says why instead of reporting them alone."""
    np.savez(tmp_path / "zero.npz", W=np.zeros((5, 5)))
    empty = run_cli("--matrix", tmp_path / "zero.npz")
    assert empty.returncode == 0 and "warning: the network has no synapse" in empty.stderr, empty.stderr
    tiny = run_cli("--nodes", "3")
    assert tiny.returncode == 0 and "keeps none" in tiny.stderr, tiny.stderr
    assert "keeps none" not in run_cli("--nodes", "40").stderr


def test_a_rerun_into_the_same_folder_leaves_no_stale_results(tmp_path):
    """decay.csv of an earlier run must not sit beside a summary that measured no decay."""
    out = tmp_path / "out"
    assert main(["--nodes", "20", "--duration", "0", "--out", str(out), "--json"]) == 0
    assert (out / "decay.csv").exists()
    assert main(["--nodes", "20", "--duration", "0", "--decay-duration", "0", "--out", str(out), "--json"]) == 0
    assert json.loads((out / "summary.json").read_text())["rules"]["noise"]["decay_trajectory_error"] is None
    assert not (out / "decay.csv").exists() and not (out / "decay.png").exists()
    assert (out / "pruned_noise.npz").exists()
    # a folder without an earlier run keeps a file of the user's that has one of these names
    own = tmp_path / "own"
    own.mkdir()
    (own / "decay.csv").write_text("the user's own table\n")
    assert main(["--nodes", "20", "--duration", "0", "--decay-duration", "0", "--out", str(own), "--json"]) == 0
    assert (own / "decay.csv").read_text() == "the user's own table\n"
    # a run's folder (a fit's): its report then listed the pruning's plots among the fit's own
    from nestplast.store import RunStore

    RunStore.create(tmp_path / "fit", experiment={"rule": "taylor"}, seed=1, meta={"kind": "infer"}).close()
    assert main(["--nodes", "20", "--duration", "0", "--out", str(tmp_path / "fit")]) == 2
    assert not list((tmp_path / "fit").glob("*.png")) and not (tmp_path / "fit" / "summary.json").exists()


def test_cli_bad_covariance_probe_and_generated_network_in_one_line(tmp_path, capsys):
    assert "probe for longer" in rejected(capsys, "--nodes", 20, "--covariance", "nest", "--probe", 0.5)
    assert "probe for longer" in rejected(capsys, "--nodes", 20, "--covariance", "nest", "--probe", 1)  # one sample
    # the authors' construction on 4 neurons has a mode that never decays: say which options made it
    assert "--network authors --nodes 4" in rejected(capsys, "--network", "authors", "--nodes", 4)
    path = tmp_path / "m.npz"
    np.savez(path, W=np.array([[-1.0, 0.5j], [0.5j, -1.0]]))
    assert "complex" in rejected(capsys, "--matrix", path)


@pytest.mark.parametrize("args, message", [
    (["--sweep", "0.5,0.1"], "--sweep applies with --out"),  # the sweep is only written there
    (["--probe", "50"], "--probe applies to --covariance nest, not lyapunov"),
    (["--covariance", "lyapunov", "--probe", "50"], "--probe applies to --covariance nest, not lyapunov"),
    (["--slowest", "500"], "--slowest must be at most the number of neurons, 200 (--nodes), got 500"),
    (["--nodes", "30", "--slowest", "31"], "--slowest must be at most the number of neurons, 30"),
    (["--network", "random", "--p-in", "0.3"], "--p-in applies to --network clustered or authors, not random"),
    (["--decay-duration", "0", "--decay-states", "5"], "--decay-states applies to the decay"),
    (["--warmup", "100"], "--warmup applies to --covariance nest, not lyapunov"),
    # nothing is simulated: every measure is the linear network's
    (["--rectified", "--duration", "0"], "--rectified applies to the NEST simulations (--covariance nest, or "
                                         "--duration above 0), not --covariance lyapunov with --duration 0"),
])
def test_cli_refuses_options_that_would_be_ignored(capsys, args, message):
    """An option given where it cannot apply is refused in one line, not dropped without a word."""
    assert message in rejected(capsys, *args)


@pytest.mark.parametrize("option", [["--network", "authors"], ["--network", "clustered"], ["--inhibitory", "0.5"],
                                    ["--p-in", "0.3"], ["--p-out", "0.1"], ["--long-range", "10"],
                                    ["--density", "0.5"]])
def test_cli_refuses_generator_options_with_a_matrix(tmp_path, capsys, option):
    path = tmp_path / "m.npz"
    np.savez(path, W=np.full((5, 5), 0.1) - 0.1 * np.eye(5))
    assert f"{option[0]} applies to a generated network, not --matrix" in rejected(capsys, "--matrix", path, *option)


@pytest.mark.parametrize("nodes", ["5", "200"])
def test_cli_refuses_nodes_with_a_matrix_whatever_the_value(tmp_path, capsys, nodes):
    """--nodes 200, the default's value, passed unseen by argparse's mutual exclusion."""
    path = tmp_path / "m.npz"
    np.savez(path, W=np.full((5, 5), 0.1) - 0.1 * np.eye(5))
    assert "argument --nodes: not allowed with argument --matrix" in rejected(capsys, "--matrix", path, "--nodes", nodes)


def test_cli_says_what_makes_a_usable_authors_network(capsys):
    """'try more --nodes or another --seed' cannot help where the options make every draw unusable;
    a --long-range that the user never gave was named as if they had."""
    message = rejected(capsys, "--network", "authors", "--p-in", 0, "--nodes", 1000, "--seed", 3)
    assert "give --p-in above 0" in message and "whatever --nodes or --seed" in message
    message = rejected(capsys, "--network", "authors", "--p-in", 0.01, "--nodes", 1000, "--seed", 3)
    assert "2 of its neurons have no synapse" in message and "--nodes or another --seed" not in message
    assert "give a larger --p-in or --long-range (default 2.5 x --nodes = 2500)" in message
    message = rejected(capsys, "--network", "authors", "--nodes", 3)
    assert "the default --long-range, 2.5 x --nodes = 8, is more links than 3 neurons have pairs" in message
    assert "give --long-range 6 or less, or more --nodes" in message
    assert "error: --long-range 8 is more links" in rejected(capsys, "--network", "authors", "--nodes", 3,
                                                             "--long-range", 8)


@pytest.mark.parametrize("options, expected", [
    (["--network", "random", "--nodes", "20", "--duration", "0"],
     {"network": "random", "nodes": 20, "density": 0.2, "inhibitory": 0.0, "seed": 0, "keep": 0.2,
      "diagonal": "row-sum", "covariance": "lyapunov", "slowest": 10, "duration": 0.0, "decay_duration": 400.0,
      "decay_states": 20, "sweep": [0.5, 0.2, 0.1, 0.05]}),
    (["--network", "authors", "--nodes", "20", "--duration", "0", "--decay-duration", "0", "--sweep", "0.5"],
     {"network": "authors", "nodes": 20, "p_in": 0.6, "long_range": 50, "seed": 0, "keep": 0.2,
      "diagonal": "row-sum", "covariance": "lyapunov", "slowest": 10, "duration": 0.0, "decay_duration": 0.0,
      "sweep": [0.5, 0.2]}),
    (["--matrix", "MATRIX", "--keep", "0.5", "--duration", "0", "--decay-duration", "10"],
     {"matrix": "MATRIX", "seed": 0, "keep": 0.5, "diagonal": "row-sum", "covariance": "lyapunov", "slowest": 5,
      "duration": 0.0, "decay_duration": 10.0, "decay_states": 20, "sweep": [0.5, 0.2, 0.1, 0.05]}),
], ids=["random", "authors", "matrix"])
def test_settings_are_those_that_applied_with_the_values_used(tmp_path, capsys, options, expected):
    """summary.json recorded nodes 200 and network clustered with --matrix, p_in 0.6 and density None
    for a random network of density 0.2, the probe of a Lyapunov run, decay_states with no decay."""
    matrix = tmp_path / "m.npz"
    np.savez(matrix, W=np.full((5, 5), 0.1) - 0.1 * np.eye(5))
    options = [str(matrix) if o == "MATRIX" else o for o in options]
    expected = {k: str(matrix) if v == "MATRIX" else v for k, v in expected.items()}
    assert main([*options, "--out", str(tmp_path / "one"), "--json"]) == 0
    saved = json.loads((tmp_path / "one" / "summary.json").read_text())
    settings = dict(saved["settings"])
    assert settings.pop("nestplast") and settings == expected
    # given back as options, they make the same run
    assert main([*as_options(settings), "--out", str(tmp_path / "two"), "--json"]) == 0
    assert json.loads((tmp_path / "two" / "summary.json").read_text()) == saved


def slow_matrix(path, rate=1e-5):
    """Three neurons in a line whose W - I is minus a graph Laplacian, shifted by -rate: the slowest
    eigenvalue is -rate, a time constant of tau / rate (1e6 ms at 1e-5)."""
    coupling = np.array([[0.0, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.0]])
    np.savez(path, W=coupling + np.diag(1.0 - rate - coupling.sum(axis=1)))
    return path


def test_the_warm_up_before_the_probe_is_bounded_and_said(tmp_path):
    """The warm-up was five of the slowest time constants, 5e6 ms here: the command seemed to hang.
    It is at most the --probe, a note says how long and why, --warmup sets it, the summary records it."""
    matrix = slow_matrix(tmp_path / "slow.npz")
    args = ("--matrix", matrix, "--covariance", "nest", "--probe", 200, "--keep", 1, "--duration", 0,
            "--decay-duration", 0, "--json")
    out = run_cli(*args, "--out", tmp_path / "capped", timeout=120)
    assert out.returncode == 0, out.stderr
    short = ("warning: the 200 ms --probe spans 0.0002 of the network's slowest time constant (1e+06 ms): the "
             "covariance it measures along the slow modes is mostly noise, and the noise rule ranks the synapses by "
             "it; give a --probe of at least 1e+07 ms, or --covariance lyapunov")
    assert out.stderr.splitlines() == [short,
        "note: --covariance nest simulates a warm-up of 200 ms (as long as the --probe: five of the slowest time "
        "constant would be 5e+06 ms, and a mode slower than the probe barely moves within it) before the 200 ms "
        "--probe; --warmup sets it"]
    assert json.loads((tmp_path / "capped" / "summary.json").read_text())["settings"]["warmup"] == 200
    given = run_cli(*args, "--warmup", 30, "--out", tmp_path / "given", timeout=120)
    assert given.returncode == 0 and given.stderr.splitlines() == [short], given.stderr  # the user said how long
    assert json.loads((tmp_path / "given" / "summary.json").read_text())["settings"]["warmup"] == 30


def test_sigterm_stops_a_long_simulation_promptly():
    """One long nest.Simulate held off the SIGTERM handler until it returned (here after days of
    NEST time): the run stops within a few seconds, with exit code 143 and one line, as every command."""
    process = subprocess.Popen([sys.executable, *MODULE, "--nodes", "20", "--covariance", "nest", "--probe", "1e9",
                                "--duration", "0", "--decay-duration", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        note = process.stderr.readline()  # said just before the simulation starts
        assert note.startswith("note: --covariance nest simulates a warm-up"), note
        time.sleep(1.0)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        stopped = time.monotonic() - sent
    finally:
        process.kill()  # a run that ignored the signal must not go on after the test
    assert process.returncode == 143 and err.strip().splitlines() == ["terminated"] and out == "", err
    assert stopped < 5


def test_a_measure_that_overflows_is_not_shown_as_skipped(capsys):
    """An unstable pruned network's free decay over 1e5 ms leaves the floating-point range: decay.csv
    held inf and NaN while the table and the JSON showed '-', the mark of a skipped measure."""
    args = ["--network", "authors", "--nodes", "100", "--keep", "0.05", "--diagonal", "zero", "--duration", "0",
            "--decay-duration", "100000"]
    assert main([*args, "--json"]) == 0
    out, err = capsys.readouterr()
    rules = json.loads(out)["rules"]
    assert {r["decay_trajectory_error"] for r in rules.values()} == {"inf"}  # float("inf") reads it back
    assert all(r["trajectory_error"] is None for r in rules.values())  # skipped
    warnings = [line for line in err.splitlines() if "decay trajectory error" in line]
    assert len(warnings) == 3 and "of the noise rule is inf: the pruned network's free decay grew past" in warnings[0]
    assert "shorter --decay-duration" in warnings[0]
    assert main(args) == 0
    for line in capsys.readouterr().out.splitlines()[2:]:
        assert line.split()[6:8] == ["-", "inf"]  # trajectory skipped, decay inf


def test_cli_slowest_is_at_most_the_matrix_size_and_reported_as_used(tmp_path, capsys):
    """--slowest beyond a loaded matrix's neurons is refused; left at its default on a smaller
    network, the summary reports the number of eigenvalues actually averaged (here all 5)."""
    path = tmp_path / "m.npz"
    np.savez(path, W=np.full((5, 5), 0.1) - 0.1 * np.eye(5))
    assert "--slowest must be at most the number of neurons, 5 (in " in rejected(capsys, "--matrix", path,
                                                                                  "--slowest", 6)
    assert main(["--matrix", str(path), "--duration", "0", "--decay-duration", "0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["slowest"] == 5
    for rule in summary["rules"].values():  # the mean over the 5 slowest is the mean over all 5
        assert rule["eigenvalue_error_slowest"] == pytest.approx(rule["eigenvalue_error"])


def test_cli_help_gives_the_defaults():
    from nestplast.commands.prune import parser

    text = " ".join(parser().format_help().split())
    for default in ("ms of the noise-driven NEST trajectories (default 200.0;", "--covariance nest (default 10000)",
                    "(default 0.5,0.2,0.1,0.05)", "(default 0.6)", "(default 20)", "default clustered",
                    "neurons of a generated network (default 200)",
                    "default five of the slowest time constants, at most the --probe"):
        assert default in text
    # what --rectified changes, and where it does nothing
    assert "with --covariance lyapunov it changes the trajectory column alone; refused where nothing is simulated" in text


def test_out_without_matplotlib_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    """matplotlib is an extra: without it --out pruned and simulated, then ended in a ModuleNotFoundError
    traceback with half its files written."""
    import sys

    from nestplast.commands.prune import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: find_spec gives None, import fails
    assert main(["--nodes", "20", "--duration", "0", "--out", str(tmp_path / "out")]) == 2
    assert "the plots need matplotlib, the extra 'plots'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _dale_matrix(n: int = 100, n_i: int = 20, seed: int = 0) -> np.ndarray:
    """An E/I matrix that keeps Dale's law (each column one sign), zero diagonal, stable."""
    rng = np.random.default_rng(seed)
    W = rng.uniform(0.0, 1.0, (n, n)) * (rng.random((n, n)) < 0.2) / n
    W[:, n - n_i:] *= -4.0
    np.fill_diagonal(W, 0.0)
    return W


def test_self_couplings_of_the_other_sign_are_warned_about(tmp_path):
    """--diagonal row-sum (the default) gave 42 of 80 excitatory neurons of a user's E/I matrix a
    negative self-coupling, without a word."""
    W = _dale_matrix()
    np.savez(tmp_path / "ei.npz", W=W)
    out = run_cli("--matrix", tmp_path / "ei.npz", "--keep", 0.5, "--duration", 0, "--out", tmp_path / "run")
    assert out.returncode == 0, out.stderr
    pruned = np.load(tmp_path / "run" / "pruned_noise.npz")["W"]
    signs = np.sign(W.sum(axis=0))
    flipped = int(np.sum(np.diag(pruned) * signs < 0))  # counted here from the saved matrix, a second way
    assert flipped > 0
    assert "warning: the matrix gives each neuron one sign (Dale's law), but the diagonal row-sum gave " \
           f"self-couplings the other sign ({flipped} by the noise rule" in out.stderr, out.stderr
    kept = run_cli("--matrix", tmp_path / "ei.npz", "--keep", 0.5, "--duration", 0, "--diagonal", "original")
    assert kept.returncode == 0 and "Dale" not in kept.stderr, kept.stderr
    # one sign for all (as the default clustered network): the diagonal's sign is no neuron's, nothing to say
    np.savez(tmp_path / "e.npz", W=np.abs(W) * 0.5)
    assert "Dale" not in run_cli("--matrix", tmp_path / "e.npz", "--keep", 0.5, "--duration", 0).stderr


def test_a_value_out_of_the_columns_range_is_printed_short():
    from nestplast.analysis.pruning import format_table

    summary = {"slowest": 10, "nodes": 5, "synapses": 8, "keep": 0.5, "diagonal": "row-sum",
               "rules": {"uniform": {"kept": 4, "eigenvalue_error": 0.1, "eigenvalue_error_max": 0.2,
                                     "eigenvalue_error_slowest": 0.3, "rayleigh_error": None, "trajectory_error": None,
                                     "decay_trajectory_error": 1.413079548643971e33, "largest_real_eigenvalue": 0.5}}}
    row = format_table(summary).splitlines()[-1]
    assert "1.413e+33" in row and len(row) == len(format_table(summary).splitlines()[1])


def test_a_probe_short_of_the_slowest_time_constant_is_warned_of():
    """20 ms of a network whose slowest mode takes 301 ms: the noise rule came out the worst of the
    three, after a note that read as reassurance."""
    out = run_cli("--nodes", 40, "--covariance", "nest", "--probe", 20, "--duration", 0, "--decay-duration", 0)
    assert out.returncode == 0, out.stderr
    assert "warning: the 20 ms --probe spans 0.2 of the network's slowest time constant (100 ms)" in out.stderr
    quiet = run_cli("--nodes", 40, "--covariance", "nest", "--probe", 1000, "--duration", 0, "--decay-duration", 0)
    assert quiet.returncode == 0 and "--probe spans" not in quiet.stderr, quiet.stderr


def test_unstable_networks_in_the_sweep_are_named(tmp_path):
    """Only --keep's unstable network was warned of; the sweep's others (their slow modes' errors
    saturated at 1.0) went into sweep.csv and sweep.png without a word."""
    import csv

    out = run_cli("--network", "authors", "--nodes", "60", "--keep", "0.3", "--seed", "1", "--sweep", "0.5,0.3,0.1",
                  "--duration", "0", "--decay-duration", "0", "--out", tmp_path / "run")
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "run" / "sweep.csv") as f:
        unstable = [f"{r['rule']} at keep {float(r['keep']):g}" for r in csv.DictReader(f)
                    if float(r["keep"]) != 0.3 and float(r["largest_real_eigenvalue"]) >= -1e-10]
    assert unstable, "premise: the sweep has unstable networks besides --keep's"
    said = [line for line in out.stderr.splitlines() if line.startswith("warning: in the sweep")]
    assert said == [f"warning: in the sweep, the networks pruned by {', '.join(unstable)} are unstable too (W - "
                    "leak*I has an eigenvalue with real part >= 0 up to rounding): their rows in sweep.csv and points "
                    "in sweep.png compare nothing"]
