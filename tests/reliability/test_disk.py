"""Disk full and read-only data directories, on a real tmpfs mount (needs root, as in CI).

SQLite sees the real ENOSPC and EROFS errors; nothing here is simulated."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_process import cli, cli_popen
from tests.fake_ollama import Reply
from tests.reliability.conftest import db_path, integrity, read_at_least, stored

pytestmark = pytest.mark.timeout(120)


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def fill(path: Path) -> Path:
    """Write zeros into ``path/filler`` until the file system is full."""
    filler = path / "filler"
    block = b"\0" * 4096
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return filler


@pytest.fixture
def small_home(tmp_path, cli_env, fake_ollama) -> Iterator[dict]:
    with mounted_tmpfs(tmp_path / "mnt", "2m") as mnt:
        cli_env.update(OLLANG_HOME=str(mnt / "home"), OLLAMA_HOST=fake_ollama.host_port)
        first = cli("ask", "before the disk filled", "--session", "d", env=cli_env)
        assert first.returncode == 0, first.stderr
        yield cli_env


@pytest.mark.reliability("Faults", "disk full when the question is saved")
def test_disk_full_is_a_clear_error_and_keeps_the_history(small_home, ledger):
    env = small_home
    home = Path(env["OLLANG_HOME"])
    before = stored(env, "d")
    filler = fill(home.parent)
    question = "a long question " * 4000  # 64 KB: needs new pages
    out = cli("ask", question, "-c", env=env)
    err = out.stderr.decode()
    assert out.returncode == 1, err
    assert err.startswith("error: cannot ") and "disk is full" in err and "Traceback" not in err
    filler.unlink()

    assert integrity(db_path(env)) == "ok"
    after_fault = stored(env, "d")
    # All or nothing: either the question is stored whole, or not at all.
    assert after_fault in (before, [*before, ("human", question, "complete")])
    again = cli("ask", "after freeing space", "-c", env=env)
    assert again.returncode == 0, again.stderr
    humans = [r[1] for r in stored(env, "d") if r[0] == "human"]
    ledger.account(["before the disk filled", "after freeing space"], humans)
    assert humans[0] == "before the disk filled" and humans[-1] == "after freeing space"
    assert integrity(db_path(env)) == "ok"


@pytest.mark.reliability("Faults", "disk full while the answer streams")
def test_disk_full_mid_answer_keeps_the_last_flush(small_home, fake_ollama, ledger):
    env = small_home
    home = Path(env["OLLANG_HOME"])
    fake_ollama.token_delay = 0.02
    fake_ollama.queue(Reply(tokens=[f" {i:04d}" + "x" * 2000 for i in range(1000)]))
    proc = cli_popen("ask", "stream a lot", "-c", env=env)
    read_at_least(proc.stdout, 5000)
    # Keep reading, as a terminal would, so the CLI never blocks on a full pipe.
    drain = threading.Thread(target=proc.stdout.read, daemon=True)
    drain.start()
    time.sleep(2.5)  # past two of the once-a-second flushes
    filler = fill(home.parent)
    err = proc.stderr.read()
    proc.wait(timeout=60)
    filler.unlink()
    err_text = err.decode()
    assert proc.returncode == 1, err_text
    assert "disk is full" in err_text and "Traceback" not in err_text

    assert integrity(db_path(env)) == "ok"
    rows = stored(env, "d")
    assert rows[2] == ("human", "stream a lot", "complete")
    # What was flushed before the disk filled is still there, marked unfinished (on disk
    # a snapshot, "partial", until the store is next opened; read back as interrupted).
    assert rows[3][0] == "ai" and rows[3][2] in ("partial", "interrupted", "error")
    assert rows[3][1].startswith(" 0000x")
    again = cli("ask", "still here?", "-c", env=env)
    assert again.returncode == 0, again.stderr
    assert stored(env, "d")[3][2] in ("interrupted", "error")
    humans = [r[1] for r in stored(env, "d") if r[0] == "human"]
    sent = ["before the disk filled", "stream a lot", "still here?"]
    ledger.account(sent, humans)
    assert humans == sent


@pytest.mark.reliability("Faults", "read-only data directory")
def test_read_only_data_directory(small_home, ledger):
    env = small_home
    home = Path(env["OLLANG_HOME"])
    before = stored(env, "d")
    before_bytes = {p.name: p.read_bytes() for p in home.iterdir()}
    remount(home.parent, "ro")
    try:
        out = cli("ask", "written to a read-only disk?", "-c", env=env)
        err = out.stderr.decode()
        assert out.returncode == 1, err
        assert err.startswith("error: ") and "read-only" in err and "Traceback" not in err
        # Reading still works: list and show the sessions.
        listed = cli("sessions", env=env)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.decode().startswith("d ")
        shown = cli("sessions", "show", "d", env=env)
        assert "before the disk filled" in shown.stdout.decode()
    finally:
        remount(home.parent, "rw")
    assert {p.name: p.read_bytes() for p in home.iterdir()} == before_bytes
    assert integrity(db_path(env)) == "ok" and stored(env, "d") == before
    humans = [r[1] for r in stored(env, "d") if r[0] == "human"]
    ledger.account(["before the disk filled"], humans)


def test_mount_helper_cleans_up(tmp_path):
    with mounted_tmpfs(tmp_path / "m", "64k") as m:
        (m / "x").write_text("x")
        assert os.path.ismount(m)
    assert not os.path.ismount(tmp_path / "m")
