"""The pruning command line (python -m nestplast prune, also python -m nestplast.prune): JSON
and text output, the files it writes, bad input in one line with exit code 2, output paths
checked before any work, and warnings about unstable pruned networks."""

import json
import subprocess
import sys
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
    assert settings["covariance"] == "lyapunov" and settings["matrix"] is None and "nestplast" in settings
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
    assert len(warnings) == 3
    for (rule, m), warning in zip(rules.items(), warnings):
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
])
def test_cli_rejects_bad_matrices(tmp_path, capsys, matrix, message):
    path = tmp_path / "m.npz"
    if matrix is None:
        np.savez(path, weights=np.eye(2))
    else:
        np.savez(path, W=matrix)
    assert message in rejected(capsys, "--matrix", path, "--json")


def test_cli_names_files_that_are_not_a_matrix_archive(tmp_path, capsys):
    """A bare .npy array, or a text file named .npz: what is expected, not numpy's advice to load
    pickles."""
    np.save(tmp_path / "w.npy", np.eye(3))
    (tmp_path / "w.npz").write_text("not numpy")
    message = rejected(capsys, "--matrix", tmp_path / "w.npy")
    assert "a single .npy array, not an .npz archive" in message and "numpy.savez(path, W=matrix)" in message
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
                    "(default 0.5,0.2,0.1,0.05)", "(default 0.6)", "(default 20)", "default clustered"):
        assert default in text


def test_out_without_matplotlib_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    """matplotlib is an extra: without it --out pruned and simulated, then ended in a ModuleNotFoundError
    traceback with half its files written."""
    import sys

    from nestplast.commands.prune import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: find_spec gives None, import fails
    assert main(["--nodes", "20", "--duration", "0", "--out", str(tmp_path / "out")]) == 2
    assert "the plots need matplotlib, the extra 'plots'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
