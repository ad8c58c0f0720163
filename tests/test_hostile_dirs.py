"""Run and results directories shared with a hostile colleague: a symlink planted where we write
(the lock, a checkpoint, a report, a figure, ``tb/`` or ``runs/``) is refused with one clear line
and the file it points to is never touched; a data root recorded in a run is never used; written
files honour the umask; no temporary file survives a failure."""
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

import evaluate
import train_controller
from agents.io import UnsafePathError, atomic_write_json
from agents.rundir import LOCK_NAME, DirectoryLock, RunDirError, prepare_directory
from helpers_cli import TINY, cli, error_line

EVAL_TINY = ["--task", "digits", "--steps", "5", "--seeds", "1", "--eval-every", "5", "--episodes", "0",
             "--baselines", "sgd", "--grid", "paper"]


@pytest.fixture
def victim(tmp_path):
    """A file outside every run directory that a planted symlink points to."""
    path = tmp_path / "outside" / "precious.txt"
    path.parent.mkdir()
    path.write_text("precious")
    return path


def untouched(victim: Path) -> bool:
    return victim.read_text() == "precious" and sorted(p.name for p in victim.parent.iterdir()) == ["precious.txt"]


# --------------------------------------------------------------------------- the lock
def test_a_symlinked_lock_is_refused_on_resume(run_dir, victim, capsys):
    (run_dir / LOCK_NAME).symlink_to(victim)
    code, err = cli(train_controller.main, ["--resume", run_dir, "--steps", 80, "--no-progress"], capsys)
    assert code != 0
    assert "symbolic link" in error_line(err)
    assert untouched(victim)


def test_a_symlinked_lock_is_refused_by_a_fresh_run_with_overwrite(run_dir, victim, capsys):
    (run_dir / LOCK_NAME).symlink_to(victim)
    code, err = cli(train_controller.main, ["--steps", 40, "--out", run_dir, "--overwrite", *TINY], capsys)
    assert code != 0
    assert "symbolic link" in error_line(err)
    assert untouched(victim)
    assert (run_dir / "controller.pt").is_file()  # refused before the old run was removed


def test_a_fifo_lock_is_refused(tmp_path):
    os.mkfifo(tmp_path / LOCK_NAME)
    with pytest.raises(RunDirError, match="not a regular file"):
        DirectoryLock(tmp_path).acquire()


# --------------------------------------------------------------------------- run files
@pytest.mark.parametrize("name", ["summary.json", "settings.json", "controller.pt"])
def test_a_symlinked_run_file_is_refused_on_resume(name, run_dir, victim, capsys):
    (run_dir / name).unlink()
    (run_dir / name).symlink_to(victim)
    code, err = cli(train_controller.main, ["--resume", run_dir, "--steps", 80, "--no-progress"], capsys)
    assert code != 0
    assert "Traceback" not in err
    assert untouched(victim)


def test_a_symlinked_tb_is_refused_on_resume(run_dir, victim, capsys):
    shutil.rmtree(run_dir / "tb")
    (run_dir / "tb").symlink_to(victim.parent, target_is_directory=True)
    code, err = cli(train_controller.main, ["--resume", run_dir, "--steps", 80, "--no-progress"], capsys)
    assert code != 0
    assert "symbolic link" in error_line(err)
    assert untouched(victim)


def test_atomic_write_refuses_a_symlink_and_its_directory(tmp_path, victim):
    (tmp_path / "a.json").symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        atomic_write_json(tmp_path / "a.json", {"x": 1})
    (tmp_path / "sub").symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        atomic_write_json(tmp_path / "sub" / "b.json", {"x": 1})
    assert untouched(victim)
    assert not list(tmp_path.glob(".*.tmp"))


# --------------------------------------------------------------------------- results directories
@pytest.mark.parametrize("name", [LOCK_NAME, "summary.csv", "results.md", "curves.csv", "results.json",
                                  "loss_paper_protocol.png"])
def test_evaluate_refuses_a_symlink_in_its_results_directory(name, tmp_path, victim, capsys):
    out = tmp_path / "ev"
    out.mkdir()
    (out / name).symlink_to(victim)
    code, err = cli(evaluate.main, [*EVAL_TINY, "--out", out], capsys)
    assert code != 0
    assert "symbolic link" in error_line(err)
    assert untouched(victim)


def test_evaluate_refuses_a_symlinked_runs_directory(tmp_path, victim, capsys):
    out = tmp_path / "ev"
    out.mkdir()
    (out / "runs").symlink_to(victim.parent, target_is_directory=True)
    code, err = cli(evaluate.main, [*EVAL_TINY, "--out", out], capsys)
    assert code != 0
    assert "symbolic link" in error_line(err)
    assert untouched(victim)


def test_a_user_named_symlink_as_out_is_followed_once(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    code, err = cli(train_controller.main, ["--steps", 40, "--out", tmp_path / "link", *TINY], capsys)
    assert code == 0, err
    assert (real / "controller.pt").is_file()


# --------------------------------------------------------------------------- data root
def test_resume_never_uses_a_data_root_recorded_in_the_run(run_dir, tmp_path, capsys):
    planted = tmp_path / "planted-data-root"
    planted.mkdir()
    path = run_dir / "settings.json"
    settings = json.loads(path.read_text())
    settings["train"]["data_root"] = str(planted)
    path.write_text(json.dumps(settings))
    code, err = cli(train_controller.main, ["--resume", run_dir, "--steps", 80, "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads(path.read_text())["train"]["data_root"] is None
    assert not list(planted.iterdir())


# --------------------------------------------------------------------------- umask, temp files
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_honour_the_umask(umask, mode, tmp_path, capsys):
    old = os.umask(umask)
    try:
        code, err = cli(train_controller.main, ["--steps", 40, "--out", tmp_path / "run", *TINY], capsys)
    finally:
        os.umask(old)
    assert code == 0, err
    for name in ("controller.pt", "settings.json", "summary.json"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == mode, name


def test_a_failing_write_probe_leaves_no_file(tmp_path, monkeypatch):
    import errno

    real_write = os.write

    def full(fd, data):
        if ".write-test." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(RunDirError, match="no space left"):
        prepare_directory(tmp_path / "out")
    monkeypatch.undo()
    assert not list((tmp_path / "out").iterdir())


def test_seeds_refuse_a_symlinked_seed_directory(tmp_path, victim, capsys):
    out = tmp_path / "five"
    out.mkdir()
    (out / "seed-1").symlink_to(victim.parent, target_is_directory=True)
    code, err = cli(train_controller.main, ["--seeds", "0-1", "--steps", 40, "--out", out, *TINY], capsys)
    assert code != 0
    assert "symbolic link" in error_line(err)
    assert untouched(victim)
    assert not (out / "seed-0").exists()
