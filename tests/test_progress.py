"""The CLI's progress display: drawn on stderr when it is a terminal, never with ``--quiet`` or a pipe.

Each long phase is run with its stderr on a pseudo-terminal and the raw bytes are searched for the
phase's progress line (tqdm's description); stdout is a pipe and must carry only the answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from relumilp.examples import load_example

if sys.platform == "win32":
    pytest.skip("needs a pseudo-terminal", allow_module_level=True)

import fcntl  # noqa: E402  (POSIX only)
import pty  # noqa: E402
import struct  # noqa: E402
import termios  # noqa: E402


def _run_with_terminal_stderr(args: list[str], cwd) -> tuple[int, str, str]:
    """Run ``python -m relumilp ARGS`` with stderr on a pty; returns (exit code, stdout, terminal bytes)."""
    leader, follower = pty.openpty()
    # a terminal of 100 columns (a fresh pty has size 0 x 0, where tqdm draws nothing)
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "relumilp", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks: list[bytes] = []

    def drain() -> None:  # read while it runs, or a full pty buffer would block the child
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=120)
    reader.join(timeout=10)
    os.close(leader)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def peaks_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("progress")
    example = load_example("peaks")
    example.network.save(folder / "peaks.npz")
    lo, hi = example.domain.lower, example.domain.upper
    (folder / "prop.vnnlib").write_text(
        "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
        f"(assert (>= X_0 {lo[0]}))\n(assert (<= X_0 {hi[0]}))\n"
        f"(assert (>= X_1 {lo[1]}))\n(assert (<= X_1 {hi[1]}))\n(assert (>= Y_0 8.2))\n")
    return folder


PHASES = [
    (["solve", "--example", "peaks", "--maximize", "0", "--method", "bab"], ["branch and bound"]),
    (["solve", "--example", "peaks", "--maximize", "0", "--method", "milp"], ["solve"]),
    (["stats", "--example", "peaks", "--regions", "exact", "--samples", "0", "--plot", "figs"],
     ["regions (exact)", "figures"]),
    (["stats", "--example", "peaks", "--regions", "mip", "--samples", "0"], ["regions (LP enumeration)"]),
    (["verify", "peaks.npz", "prop.vnnlib"], ["verify"]),
]


@pytest.mark.parametrize("args, lines", PHASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in PHASES])
def test_long_phases_draw_progress_on_a_terminal(peaks_model, args, lines):
    code, out, terminal = _run_with_terminal_stderr(args, peaks_model)
    assert code == 0, terminal
    for line in lines:
        assert line in terminal, f"no {line!r} progress line on the terminal: {terminal!r}"
    assert "\r" not in out  # stdout carries the answer only


def test_quiet_draws_nothing_on_a_terminal(peaks_model):
    args, _ = PHASES[2]  # stats --regions exact --plot
    code, out, terminal = _run_with_terminal_stderr([*args, "--quiet"], peaks_model)
    assert code == 0, terminal
    assert "\r" not in terminal and "regions (exact)" not in terminal, terminal


def test_no_progress_when_stderr_is_a_pipe(peaks_model):
    done = subprocess.run([sys.executable, "-m", "relumilp", "stats", "--example", "peaks", "--regions", "exact",
                           "--samples", "0"], cwd=peaks_model, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "regions (exact)" not in done.stderr and "\r" not in done.stderr


def test_region_sampling_and_figures_report_progress_in_process(capsys, tmp_path):
    """The API side of the same displays (the CLI turns them on only on a terminal)."""
    from relumilp.analysis import analyze_network
    from relumilp.analysis.plots import write_figures
    from relumilp.analysis.regions import sample_regions

    example = load_example("peaks")
    sample_regions(example.network, example.domain, samples=2000, progress=True)
    assert "regions (sample)" in capsys.readouterr().err
    report = analyze_network(example.network, example.domain, regions="exact", samples=0, progress=True)
    assert "regions (exact)" in capsys.readouterr().err
    write_figures(report, tmp_path, "peaks", network=example.network, progress=True)
    assert "figures" in capsys.readouterr().err
