"""Stopping a run from outside (SIGTERM, SIGHUP) and two runs on one --out: real processes and signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from explain.errors import OutDirBusyError
from explain.manifest import read_manifests
from explain.out_lock import OutDirLock
from explain.workers import STOP_GRACE_SECONDS
from tests.conftest import default_hangup
from tests.explain.test_explainer import red_square_scene
from tests.fake_endpoint import FakeEndpoint

REPO = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")


def scenes(folder: Path, count: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.fromarray(red_square_scene(seed=index)).save(folder / f"scene{index}.png")
    return folder


def explain_command(endpoint: str, out: Path, images: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "explain", "--endpoint", endpoint, "--task", "detection", "--num-samples", "24",
            "--num-segments", "6", "--quiet", "--out", str(out), *extra, str(images)]


def environment(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def descendants(pid: int) -> set[int]:
    """Every running process below ``pid`` (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def stop_while_held(command: list[str], env: dict, endpoint: FakeEndpoint, stop_signal: int,
                    before=lambda: None, seconds: float = 40) -> tuple[int, str]:
    """Start ``command``, send ``stop_signal`` once a request of it is held by ``endpoint`` (after calling
    ``before``), and return its exit status and stderr; it must end within ``seconds``."""
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert endpoint.holding.wait(60), "the run never reached the endpoint"
        before()
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=seconds)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stderr


def assert_stopped_then_resumed(stderr: str, name: str, out: Path, command: list[str], endpoint: FakeEndpoint,
                                images: int) -> None:
    """The stop's one line is on stderr; with the endpoint released, the same command explains the rest."""
    assert (f"Error: stopped by {name}; the images finished so far are kept in {out}: run the same command "
            "again to resume") in stderr
    endpoint.release()
    resumed = subprocess.run(command, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert f"explained {images} image(s)" in resumed.stdout


@pytest.fixture()
def held_endpoint():
    """The fake detector over HTTP; every request waits while ``hold`` says so (until released)."""
    with FakeEndpoint("detection") as endpoint:
        yield endpoint
        endpoint.release()


@posix_only
@pytest.mark.integration
@pytest.mark.parametrize("stop_signal, to_group", [(signal.SIGTERM, False), (signal.SIGHUP, False),
                                                    (signal.SIGHUP, True)])
def test_a_stop_signal_stops_the_workers_too_and_the_run_resumes(stop_signal, to_group, held_endpoint, tmp_path):
    # to_group: as a closed terminal does, to every process of the group; multiprocessing's resource tracker
    # is one of them, and SIGHUP ended it: a "died unexpectedly" warning and a KeyError traceback per
    # semaphore followed the run's last line (review 25)
    images = scenes(tmp_path / "images")
    out = tmp_path / "out"
    held_endpoint.hold = lambda: True
    command = explain_command(held_endpoint.url, out, images, "--workers", "2")
    process = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=to_group,
                               preexec_fn=default_hangup)
    try:
        assert held_endpoint.holding.wait(90), "no worker reached the endpoint"
        workers = descendants(process.pid)
        assert workers
        if to_group:
            os.killpg(process.pid, stop_signal)
        else:
            process.send_signal(stop_signal)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + stop_signal, stderr
    assert "did not stop within" not in stderr  # each worker ended on its own, none was killed
    assert "Traceback" not in stderr and "resource_tracker" not in stderr, stderr
    assert wait_until(lambda: not alive(workers), 15), f"still running after the run stopped: {alive(workers)}"
    assert not list(out.glob(".manifest*.lock"))
    assert_stopped_then_resumed(stderr, signal.Signals(stop_signal).name, out, command, held_endpoint, 6)
    assert len({entry["key"] for entry in read_manifests(out)}) == 6


@posix_only
@pytest.mark.integration
def test_a_run_started_with_nohup_outlives_its_terminal(held_endpoint, tmp_path):
    # review 27: the stop handlers were installed over nohup's ignored SIGHUP, so a closed terminal (SIGHUP to the
    # whole group) stopped a nohup'ed run; now the run and its workers go on and finish
    images = scenes(tmp_path / "images")
    out = tmp_path / "out"
    held_endpoint.hold = lambda: True
    command = ["nohup", *explain_command(held_endpoint.url, out, images, "--workers", "2")]
    process = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert held_endpoint.holding.wait(90), "no worker reached the endpoint"
        os.killpg(process.pid, signal.SIGHUP)
        time.sleep(2)
        assert process.poll() is None
        held_endpoint.release()
        stdout, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr
    assert "explained 6 image(s)" in stdout


@posix_only
@pytest.mark.integration
def test_ctrl_c_in_a_terminal_stops_the_workers_at_once_while_a_model_call_hangs(held_endpoint, tmp_path):
    """A terminal's Ctrl-C reaches every process of the group: each worker got SIGINT and the parent's SIGTERM
    at once, the second exception inside the first one's handling left it idle in the pool, and it was
    killed after the grace time (10 s)."""
    images = scenes(tmp_path / "images")
    out = tmp_path / "out"
    held_endpoint.hold = lambda: True
    command = explain_command(held_endpoint.url, out, images, "--workers", "2")
    process = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert held_endpoint.holding.wait(90), "no worker reached the endpoint"
        workers = descendants(process.pid)
        os.killpg(process.pid, signal.SIGINT)
        sent = time.monotonic()
        _, stderr = process.communicate(timeout=60)
        seconds = time.monotonic() - sent
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 128 + signal.SIGINT, stderr
    # the workers ended on their own: none was left for the SIGKILL after the grace time
    assert "did not stop within" not in stderr and seconds < STOP_GRACE_SECONDS, (seconds, stderr)
    assert wait_until(lambda: not alive(workers), 15), f"still running after the run stopped: {alive(workers)}"
    assert_stopped_then_resumed(stderr, "Ctrl-C", out, command, held_endpoint, 6)


@posix_only
@pytest.mark.integration
@pytest.mark.parametrize("workers", ["1", "2"])
def test_two_quick_ctrl_cs_still_end_the_run_as_one_does(workers, held_endpoint, tmp_path):
    """A second Ctrl-C while the run unwound raised KeyboardInterrupt again: the process died of SIGINT (exit
    status -2, not 130) and multiprocessing warned of leaked semaphores (the pool's thread was still running)."""
    images = scenes(tmp_path / "images")
    out = tmp_path / "out"
    held_endpoint.hold = lambda: True
    command = explain_command(held_endpoint.url, out, images, "--workers", workers)
    process = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert held_endpoint.holding.wait(90), "the run never reached the endpoint"
        workers_pids = descendants(process.pid)
        for pause in (0.05, 0.3, 0):
            os.killpg(process.pid, signal.SIGINT)
            time.sleep(pause)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr and "leaked" not in stderr, stderr
    assert wait_until(lambda: not alive(workers_pids), 15), f"still running: {alive(workers_pids)}"
    assert not list(out.glob(".manifest*.lock"))
    assert_stopped_then_resumed(stderr, "Ctrl-C", out, command, held_endpoint, 6)


@posix_only
@pytest.mark.integration
@pytest.mark.parametrize(("stop_signal", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C")])
def test_a_run_in_one_process_stops_at_once_while_a_model_call_hangs(stop_signal, name, held_endpoint, tmp_path):
    """The request in flight would hold the process for --timeout (70 s) and its retries: it is abandoned
    (it must end within 40 s, which leaves room for a loaded machine)."""
    images = scenes(tmp_path / "images", 2)
    out = tmp_path / "out"
    held_endpoint.hold = lambda: True
    command = explain_command(held_endpoint.url, out, images)
    returncode, stderr = stop_while_held(command, environment(), held_endpoint, stop_signal)
    assert returncode == 128 + stop_signal, stderr
    assert "Traceback" not in stderr
    assert not list(out.glob(".manifest*.lock"))
    assert_stopped_then_resumed(stderr, name, out, command, held_endpoint, 2)


@posix_only
@pytest.mark.integration
def test_workers_stop_when_their_parent_is_killed(held_endpoint, tmp_path):
    """SIGKILL cannot be handled: the workers notice their parent is gone and stop themselves."""
    held_endpoint.hold = lambda: True
    command = explain_command(held_endpoint.url, tmp_path / "out", scenes(tmp_path / "images"), "--workers", "2")
    process = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        assert held_endpoint.holding.wait(90), "no worker reached the endpoint"
        workers = descendants(process.pid)
    finally:
        process.kill()
        process.wait()
    assert wait_until(lambda: not alive(workers), 15), f"orphaned workers still running: {alive(workers)}"


@posix_only
@pytest.mark.integration
def test_sigterm_removes_the_extracted_model(tiny_detector_archive, tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    out = tmp_path / "out"
    command = explain_command(str(tiny_detector_archive), out, scenes(tmp_path / "images", 40))
    process = subprocess.Popen(command, cwd=REPO, env=environment(TMPDIR=str(temporary)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # explaining: the model was extracted, loaded and has finished an image
        assert wait_until(lambda: (out / "manifest.jsonl").is_file() or process.poll() is not None, 120)
        assert process.poll() is None, "the run ended before it could be stopped"
        assert list(temporary.glob("clearsight-model-*"))
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Error: stopped by SIGTERM" in stderr
    assert not list(temporary.glob("clearsight-model-*"))
    assert 1 <= len(read_manifests(out)) < 40


@pytest.mark.integration
def test_a_second_run_into_the_same_out_is_refused_until_the_first_is_gone(held_endpoint, tmp_path):
    images = scenes(tmp_path / "images", 2)
    out = tmp_path / "out"
    held_endpoint.hold = lambda: True
    command = explain_command(held_endpoint.url, out, images)
    first = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert held_endpoint.holding.wait(60), "the first run never reached the endpoint"
        second = subprocess.run(command, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=60)
        assert second.returncode == 1, second.stderr
        (line,) = second.stderr.strip().splitlines()
        assert line.startswith(f"Error: {out} is in use by another clearsight run (pid {first.pid} on ")
        assert line.endswith("); wait for it to end or stop it, or choose another --out: two runs must not write "
                             "one folder at once")
    finally:
        first.kill()  # SIGKILL: its lock file stays behind, its lock does not
        first.wait()
    assert (out / ".manifest.jsonl.lock").is_file()
    held_endpoint.release()
    third = subprocess.run(command, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert "explained 2 image(s)" in third.stdout
    assert not (out / ".manifest.jsonl.lock").exists()


def test_the_lock_is_per_manifest_and_released(tmp_path):
    with OutDirLock(tmp_path):
        with pytest.raises(OutDirBusyError, match=f"^{tmp_path} is in use by another clearsight run "
                                                  rf"\(pid {os.getpid()} on "):
            OutDirLock(tmp_path).acquire()
        with OutDirLock(tmp_path, "shard-0-of-2"), OutDirLock(tmp_path, "shard-1-of-2"):
            pass  # shards have their own manifests and run side by side
    with OutDirLock(tmp_path):  # released: the next run takes it
        pass
    assert not list(tmp_path.iterdir())


def test_a_lock_file_that_cannot_be_opened_is_named(tmp_path, monkeypatch):
    """Review 40, D8: another user's killed run left a lock file this user cannot write: "Permission denied"
    named neither the file nor what to do. (Simulated: root may write any file.)"""
    import explain.out_lock
    from explain.manifest import OutDirWriteError

    (tmp_path / ".manifest.jsonl.lock").write_text("pid 1 on elsewhere since 2026-01-01\n")

    def refused(path, flags):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(explain.out_lock, "open_no_follow", refused)
    with pytest.raises(OutDirWriteError, match=f"^cannot write into --out {tmp_path}: Permission denied \\(its lock "
                                               "file .manifest.jsonl.lock, perhaps left by another user's run: remove "
                                               "it when no run writes into --out\\)$"):
        OutDirLock(tmp_path).acquire()


@posix_only
@pytest.mark.parametrize("name", [".manifest.jsonl.lock", "manifest.jsonl"])
def test_a_symbolic_link_planted_as_the_lock_or_manifest_is_refused_not_written_through(name, tmp_path):
    """Review 40, D4: the lock file was opened following links and truncated (and the manifest appended to):
    a link planted under its name in a shared --out overwrote the file it pointed to. Refused, naming it."""
    from explain.manifest import ManifestWriter, OutDirWriteError

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(victim)
    with pytest.raises(OutDirWriteError, match=f"^{out / name} is a symbolic link: a run writes only plain "
                                               f"files into --out; remove the link"):
        if name.endswith(".lock"):
            OutDirLock(out).acquire()
        else:
            ManifestWriter(out / name).append({"image": "x"})
    assert victim.read_text() == "precious\n"


@posix_only
@pytest.mark.parametrize(("quiet_seconds", "warned"), [(2.0, False), (0.0, True)])
def test_a_repeated_stop_signal_is_ignored_and_warned_about_only_when_late(quiet_seconds, warned, caplog,
                                                                           monkeypatch):
    """`timeout`, a closed terminal and `kill -- -PGID` signal the process, then its whole group: the
    immediate repeat was logged as "SIGTERM received while stopping", as if someone insisted."""
    import explain.stop_signals as stop_signals

    monkeypatch.setattr(stop_signals, "REPEAT_QUIET_SECONDS", quiet_seconds)
    caplog.set_level("DEBUG", logger="explain.stop_signals")
    with pytest.raises(stop_signals.RunStopped), stop_signals.stop_on_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises at the next bytecode
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # while unwinding: ignored
            time.sleep(0.1)
    repeats = [record for record in caplog.records if "received while stopping" in record.getMessage()]
    assert [record.levelname for record in repeats] == (["WARNING"] if warned else ["DEBUG"])


@posix_only
@pytest.mark.parametrize("ignored", [signal.SIGHUP, signal.SIGINT])
def test_a_signal_ignored_at_the_start_stays_ignored_and_sigterm_is_always_handled(ignored):
    import explain.stop_signals as stop_signals

    before = signal.signal(ignored, signal.SIG_IGN)
    try:
        with stop_signals.stop_on_signals(ctrl_c=True):
            assert signal.getsignal(ignored) == signal.SIG_IGN
            os.kill(os.getpid(), ignored)
            time.sleep(0.1)  # nothing happens
            with pytest.raises(stop_signals.RunStopped):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
        assert signal.getsignal(ignored) == signal.SIG_IGN
    finally:
        signal.signal(ignored, before)


# Explains the images in argv[1] into argv[2] in process; SIGKILLs itself when it fsyncs a file whose name holds argv[3].
KILLED_WHILE_WRITING = """
import os, signal, sys
from explain.config import ExplainConfig
from explain.runner import RunOptions, run_explanations
from tests.explain.test_explainer import red_square_detector

real_fsync = os.fsync
def fsync(fd):
    if sys.argv[3] in os.path.basename(os.readlink(f"/proc/self/fd/{fd}")):
        os.kill(os.getpid(), signal.SIGKILL)
    real_fsync(fd)
os.fsync = fsync
run_explanations([sys.argv[1]], red_square_detector, ExplainConfig(num_samples=24, num_segments=6), sys.argv[2],
                 RunOptions(progress=False))
"""


@posix_only
@pytest.mark.parametrize("writing", [".clearsight-output", "analysis.json", "report.html"])
def test_a_run_killed_while_writing_a_run_file_leaves_nothing_behind_the_next_run(writing, tmp_path):
    # kill26: SIGKILL while analysis.json was written left .analysis.json.<random>.tmp in --out for good;
    # while a new --out was marked, its temporary made the folder "not empty and not a clearsight
    # output folder": the next run refused it
    images = scenes(tmp_path / "images", count=2)
    out = tmp_path / "out"
    command = [sys.executable, "-c", KILLED_WHILE_WRITING, str(images), str(out)]
    killed = subprocess.run([*command, writing], cwd=REPO, env=environment(), capture_output=True, text=True,
                            timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    again = subprocess.run([*command, "nothing"], cwd=REPO, env=environment(), capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0, again.stderr
    assert sorted(path.name for path in out.iterdir() if path.name.startswith(".")) == [".clearsight-output"]
    assert json.loads((out / "analysis.json").read_text())["totals"]["images"] == 2


@posix_only
def test_lock_files_left_by_killed_runs_of_other_shards_are_removed_by_the_next_whole_run(tmp_path):
    # kill26: a --workers 3 worker killed outright (SIGKILL, the OOM killer) leaves its shard's lock file;
    # only a run of that same shard took it over, so after a resume with other --workers it stayed for good
    images = scenes(tmp_path / "images", count=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".clearsight-output").write_text("{}\n")
    (out / ".manifest-shard-2-of-3.jsonl.lock").write_text("pid 999999 on elsewhere since 2026-12-01T00:00:00+00:00\n")
    with OutDirLock(out, "shard-0-of-2"):  # a run of another shard still going: its lock stays
        subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, str(images), str(out), "nothing"], cwd=REPO,
                       env=environment(), check=True, capture_output=True, timeout=60)
        assert sorted(path.name for path in out.glob(".*.lock")) == [".manifest-shard-0-of-2.jsonl.lock"]


@pytest.mark.skipif(sys.platform == "win32", reason="stale lock files are removed on POSIX only")
def test_a_run_starting_while_a_stale_lock_file_is_being_removed_is_not_refused_as_busy(tmp_path):
    # remove_released_locks holds a stale lock file for the moment it takes to remove it; a run of that
    # manifest starting in that moment took it for a running run's and was refused as busy
    import fcntl
    import threading

    path = tmp_path / ".manifest.jsonl.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def remove_it():
        path.unlink()
        os.close(fd)

    remover = threading.Timer(0.03, remove_it)
    remover.start()
    try:
        with OutDirLock(tmp_path) as lock:
            assert path.read_text().startswith(f"pid {os.getpid()} on ")
            assert lock.path == path
    finally:
        remover.join()


@posix_only
@pytest.mark.integration
def test_a_worker_killed_outright_ends_the_run_with_one_line_and_it_resumes(held_endpoint, tmp_path):
    # review 23: a --workers process killed by the out-of-memory killer (or kill -9) ended the run with a
    # 39-line BrokenProcessPool traceback and no word on resuming
    images = scenes(tmp_path / "images")
    out = tmp_path / "out"
    held_endpoint.hold = lambda: True
    command = explain_command(held_endpoint.url, out, images, "--workers", "2")
    process = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert held_endpoint.holding.wait(90), "no worker reached the endpoint"

        def workers():
            found = set()
            for pid in alive(descendants(process.pid)):
                try:
                    command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"spawn_main" in command_line and b"resource_tracker" not in command_line:
                    found.add(pid)
            return found

        assert wait_until(lambda: len(workers()) == 2, 30), workers()
        os.kill(min(workers()), signal.SIGKILL)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr and "BrokenProcessPool" not in stderr, stderr
    assert (f"Error: a worker process ended abruptly (killed by a signal: out of memory?), so the run stopped; "
            f"the images finished so far are kept in {out}: run the same command again to resume") in stderr
    held_endpoint.release()
    resumed = subprocess.run(command, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert "explained 6 image(s)" in resumed.stdout


@posix_only
@pytest.mark.integration
def test_the_next_run_removes_the_model_a_killed_run_extracted(tiny_detector_archive, tmp_path):
    # review 23: a run killed outright (SIGKILL, the out-of-memory killer) left its extracted model.tar.gz in
    # the temporary folder (a YOLOv3: ~240 MB per run) and nothing removed it later
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    out = tmp_path / "out"
    images = scenes(tmp_path / "images", 40)
    command = explain_command(str(tiny_detector_archive), out, images)
    process = subprocess.Popen(command, cwd=REPO, env=environment(TMPDIR=str(temporary)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: (out / "manifest.jsonl").is_file() or process.poll() is not None, 120)
        left = list(temporary.glob("clearsight-model-*"))
        assert len(left) == 1 and left[0].name.startswith(f"clearsight-model-{process.pid}@")
        process.kill()
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert list(temporary.glob("clearsight-model-*")) == left  # nothing ran to remove it
    other_host = temporary / "clearsight-model-1@another-host-abc"  # another machine's (a shared /tmp): kept
    other_host.mkdir()
    next_run = explain_command(str(tiny_detector_archive), tmp_path / "next-out", scenes(tmp_path / "next", 1))
    again = subprocess.run(next_run, cwd=REPO, env=environment(TMPDIR=str(temporary)), capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert list(temporary.glob("clearsight-model-*")) == [other_host]


def test_a_run_stopped_before_its_out_was_made_does_not_say_its_images_are_kept_there(tmp_path):
    """Review 40, D8: a SIGTERM before --out existed said the finished images were "kept in" it."""
    from explain.cli import StoppedBySignal

    assert StoppedBySignal(KeyboardInterrupt(), tmp_path / "new").message == (
        f"stopped by Ctrl-C; nothing was written ({tmp_path / 'new'} was not made yet): run the same command "
        "again to resume")
    assert StoppedBySignal(KeyboardInterrupt(), tmp_path).message == (
        f"stopped by Ctrl-C; the images finished so far are kept in {tmp_path}: run the same command again to "
        "resume")
