"""Run directories you can trust (issue 13), tried as a hostile or clumsy user would:
no code from a resumed run, no silent overwrite, one lock per directory, one clear line (and a
non-zero exit) for every file-system failure, settings checked against one schema."""
import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate
import train_controller
from agents.checkpoint import load_controller
from agents.io import CheckpointError
from lrrl.config import parse_seeds
from lrrl.sweep import code_fingerprint
from agents.rundir import LOCK_NAME, DirectoryLock, RunDirError
from helpers_cli import TINY, cli

ROOT = Path(__file__).resolve().parents[1]
EVAL_TINY = ["--task", "digits", "--steps", "5", "--seeds", "1", "--eval-every", "5", "--episodes", "0"]


def run(argv):
    assert train_controller.main([str(a) for a in argv]) == 0


def one_clear_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("usage:")
             and not line.startswith("evaluate:")]  # evaluate's progress bar (error lines: "evaluate.py:")
    assert len(lines) == 1, err
    return lines[0]


def no_tmp_files(directory: Path) -> bool:
    return not [p for p in Path(directory).rglob("*.tmp")]


def edit_settings(run_dir: Path, change) -> None:
    path = run_dir / "settings.json"
    settings = json.loads(path.read_text())
    change(settings)
    path.write_text(json.dumps(settings))


# =========================================================================== security
def plant_task_module(tmp_path: Path, monkeypatch, name: str) -> tuple[str, Path]:
    """A package inside the run's reach whose task function leaves a marker when imported/called."""
    marker = tmp_path / f"{name}-ran"
    pkg = tmp_path / "planted" / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        Path({str(marker)!r}).write_text("imported")

        def make():
            from envs.tasks import digits
            Path({str(marker)!r}).write_text("called")
            return digits()
    """))
    monkeypatch.syspath_prepend(str(tmp_path / "planted"))
    return f"{name}.mod:make", marker


def test_resume_never_imports_a_task_named_only_in_settings(run_dir, tmp_path, monkeypatch, capsys):
    spec, marker = plant_task_module(tmp_path, monkeypatch, "evilpkg_resume")
    edit_settings(run_dir, lambda s: s["train"].update(task=spec))
    code, err = cli(train_controller.main, ["--resume", run_dir, "--steps", 80, "--no-progress"], capsys)
    assert code == 2 and not marker.exists()
    line = one_clear_line(err)
    assert spec in line and f"--task {spec}" in line and "code" in line
    # another task on the command line does not unlock it either
    code, err = cli(train_controller.main, ["--resume", run_dir, "--task", "digits", "--steps", 80,
                                            "--no-progress"], capsys)
    assert code == 2 and not marker.exists() and "not digits" in err


def test_resume_imports_a_user_task_named_again_on_the_command_line(run_dir, tmp_path, monkeypatch, capsys):
    spec, marker = plant_task_module(tmp_path, monkeypatch, "okpkg_resume")
    edit_settings(run_dir, lambda s: s["train"].update(task=spec))
    run(["--resume", run_dir, "--task", spec, "--steps", 50, "--no-progress"])
    assert marker.read_text() == "called"
    assert load_controller(run_dir).model.num_timesteps == 50


def test_evaluate_and_scheduler_never_import_a_task_named_in_settings(run_dir, tmp_path, monkeypatch, capsys):
    from agents.scheduler import ControllerScheduler

    spec, marker = plant_task_module(tmp_path, monkeypatch, "evilpkg_eval")
    edit_settings(run_dir, lambda s: s["train"].update(task=spec))
    code, err = cli(evaluate.main, [run_dir, *EVAL_TINY, "--baselines", "none", "--out", tmp_path / "ev"], capsys)
    assert code == 0, err
    model = torch.nn.Linear(2, 1)
    ControllerScheduler(run_dir, torch.optim.SGD(model.parameters(), lr=0.1)).step(1.0)
    assert not marker.exists()


def test_settings_may_not_name_a_task_or_an_optimizer_module_in_env_kwargs(run_dir):
    edit_settings(run_dir, lambda s: s["env_kwargs"].update(task="evil.mod:make"))
    with pytest.raises(CheckpointError, match="env_kwargs.task"):
        load_controller(run_dir)
    edit_settings(run_dir, lambda s: (s["env_kwargs"].pop("task"), s["env_kwargs"].update(optimizer="os:system")))
    with pytest.raises(CheckpointError, match="env_kwargs.optimizer"):
        load_controller(run_dir)


# =========================================================================== data loss
def test_fresh_run_into_an_existing_run_directory_is_refused(run_dir, capsys):
    before = {name: (run_dir / name).read_bytes() for name in ("settings.json", "controller.pt")}
    code, err = cli(train_controller.main, ["--steps", 40, "--seed", 3, "--out", run_dir, *TINY], capsys)
    assert code == 1
    line = one_clear_line(err)
    assert "--resume" in line and "--overwrite" in line and str(run_dir) in line
    assert {name: (run_dir / name).read_bytes() for name in before} == before


def test_overwrite_replaces_the_run_and_its_logs(run_dir):
    old_events = {p.name for p in (run_dir / "tb").rglob("*") if p.is_file()}
    assert old_events
    run(["--steps", 40, "--seed", 3, "--out", run_dir, "--overwrite", *TINY])
    assert json.loads((run_dir / "settings.json").read_text())["train"]["seed"] == 3
    new_events = {p.name for p in (run_dir / "tb").rglob("*") if p.is_file()}
    assert new_events and not (old_events & new_events)


def test_a_locked_run_directory_is_refused_by_training_and_by_evaluate(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    with DirectoryLock(out, purpose="training"):
        code, err = cli(train_controller.main, ["--steps", 40, "--out", out, *TINY], capsys)
        assert code == 1
        line = one_clear_line(err)
        assert "in use" in line and str(os.getpid()) in line
        assert not (out / "settings.json").exists()
        code, err = cli(evaluate.main, [*EVAL_TINY, "--baselines", "sgd", "--out", out], capsys)
        assert code == 1 and "in use" in one_clear_line(err)
        assert not (out / "runs").exists()
    run(["--steps", 40, "--out", out, *TINY])  # released: the directory is usable again
    assert not (out / LOCK_NAME).exists()


def test_a_lock_held_by_another_process_is_refused(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from agents.rundir import DirectoryLock; "
                               "DirectoryLock(sys.argv[1], 'training').acquire(); print('locked', flush=True); "
                               "time.sleep(900)", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=f"process {holder.pid}"):
            DirectoryLock(out).acquire()
        code, err = cli(train_controller.main, ["--steps", 40, "--out", out, *TINY], capsys)
        assert code == 1 and f"process {holder.pid}" in one_clear_line(err)
    finally:
        holder.kill()
        holder.wait()
    lock = DirectoryLock(out, note=lambda text: notes.append(text))  # the holder died: stale
    notes: list[str] = []
    with lock:
        assert lock.took_over["pid"] == str(holder.pid)
    assert notes and "stale" in notes[0] and str(holder.pid) in notes[0]


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "stale"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"pid={dead.pid}\nhost=x\npurpose=training\n")
    code, err = cli(train_controller.main, ["--steps", 40, "--out", out, *TINY], capsys)
    assert code == 0
    assert "stale lock" in err and str(dead.pid) in err
    (out / LOCK_NAME).write_text(f"pid={dead.pid}\npurpose=evaluate sweep\n")
    code, err = cli(evaluate.main, [*EVAL_TINY, "--baselines", "sgd", "--out", tmp_path / "stale"], capsys)
    assert code == 0 and "stale lock" in err


# =========================================================================== clean errors: paths
@pytest.mark.parametrize("cli_name", ["train", "evaluate"])
@pytest.mark.parametrize("case", ["file", "below-file", "read-only"])
def test_unusable_out_is_one_clear_line(cli_name, case, tmp_path, monkeypatch, capsys):
    target = tmp_path / "target"
    if case == "file":
        target.write_text("a file")
        expected = "is an existing file"
    elif case == "below-file":
        (tmp_path / "afile").write_text("a file")
        target = tmp_path / "afile" / "sub" / "run"
        expected = "lies below"
    else:
        def read_only(self, *args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", str(self))

        monkeypatch.setattr(Path, "mkdir", read_only)
        expected = "read-only file system"
    if cli_name == "train":
        code, err = cli(train_controller.main, ["--steps", 40, "--out", target, *TINY], capsys)
    else:
        code, err = cli(evaluate.main, [*EVAL_TINY, "--baselines", "sgd", "--out", target], capsys)
    assert code != 0
    assert expected in one_clear_line(err)


# =========================================================================== clean errors: full disk
def fail_writes(monkeypatch, only: str | None = None):
    """Every atomic write (or those whose file name contains ``only``) fails with ENOSPC after
    its temp file was created and written, as on a full disk."""
    real = os.fsync

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if only is None or only in name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_full_disk_at_start_of_training(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    fail_writes(monkeypatch)
    code, err = cli(train_controller.main, ["--steps", 40, "--out", out, *TINY], capsys)
    assert code == 1
    assert f"no space left on {out}" in one_clear_line(err)
    assert no_tmp_files(out)


def test_full_disk_on_resume_keeps_the_last_good_checkpoint(run_dir, monkeypatch, capsys):
    good = (run_dir / "controller.pt").read_bytes()
    fail_writes(monkeypatch)
    code, err = cli(train_controller.main, ["--resume", run_dir, "--steps", 80, "--no-progress"], capsys)
    assert code == 1
    line = one_clear_line(err)
    assert f"no space left on {run_dir}" in line and "checkpoint" in line and "kept" in line
    assert (run_dir / "controller.pt").read_bytes() == good and no_tmp_files(run_dir)
    monkeypatch.undo()
    assert load_controller(run_dir).model.num_timesteps == 40


def test_full_disk_during_training_keeps_the_last_good_checkpoint(run_dir, monkeypatch, capsys):
    good = (run_dir / "controller.pt").read_bytes()
    fail_writes(monkeypatch, only="controller.pt")  # settings.json still fits, the checkpoint not
    code, err = cli(train_controller.main, ["--resume", run_dir, "--steps", 120, "--checkpoint-every", 20,
                                            "--no-progress"], capsys)
    assert code == 1
    assert f"no space left on {run_dir}" in one_clear_line(err)
    assert (run_dir / "controller.pt").read_bytes() == good and no_tmp_files(run_dir)
    assert not (run_dir / LOCK_NAME).exists()


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     OSError(errno.EIO, "Input/output error"), RuntimeError("serialiser failed"),
                                     KeyboardInterrupt()], ids=["enospc", "eio", "runtime-error", "ctrl-c"])
def test_any_failure_during_an_atomic_write_leaves_no_temp_file(tmp_path, failure):
    """No temporary file survives a failure of any kind while a file is written (issue 27)."""
    from agents.io import _atomic_write

    target = tmp_path / "controller.pt"
    target.write_bytes(b"good")

    def write(f):
        f.write(b"partial")
        raise failure

    with pytest.raises(type(failure)):
        _atomic_write(target, write)
    assert target.read_bytes() == b"good" and no_tmp_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["controller.pt"]


def test_full_disk_during_a_td3_checkpoint_leaves_no_temp_file(tmp_path, monkeypatch, capsys):
    """The DDPG/TD3 zip (with its replay buffer, agents/snapshot.py) on a full disk: one clear
    line, the settings kept, no temp file, no lock left."""
    out = tmp_path / "td3"
    fail_writes(monkeypatch, only="controller.zip")
    code, err = cli(train_controller.main, ["--agent", "td3", "--steps", 45, "--out", out, *TINY,
                                            "--learning-starts", "40", "--batch-size", "16",
                                            "--checkpoint-every", "20"], capsys)
    assert code == 1
    assert f"no space left on {out}" in one_clear_line(err)
    assert no_tmp_files(out) and not (out / "controller.zip").exists() and not (out / LOCK_NAME).exists()


def test_full_disk_during_an_evaluate_sweep(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ev"
    fail_writes(monkeypatch, only=".json")
    code, err = cli(evaluate.main, [*EVAL_TINY, "--baselines", "sgd", "--out", out], capsys)
    assert code == 1
    assert f"no space left on {out}" in one_clear_line(err)
    assert no_tmp_files(out)
    monkeypatch.undo()
    code, err = cli(evaluate.main, [*EVAL_TINY, "--baselines", "sgd", "--out", out], capsys)
    assert code == 0 and (out / "results.json").is_file()


# =========================================================================== clean errors: settings
def test_optimizer_that_needs_a_closure_is_refused_at_start(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = cli(train_controller.main, ["--optimizer", "lbfgs", "--steps", 40, "--out", out, *TINY], capsys)
    assert code == 2 and "closure" in one_clear_line(err)
    assert not out.exists()
    from envs.primary import build_optimizer

    with pytest.raises(ValueError, match="closure"):
        build_optimizer("LBFGS", [{"params": [torch.zeros(1, requires_grad=True)]}], lr=0.1)


MALFORMED = {
    "no train": (lambda s: s.pop("train"), "'train' is missing"),
    "train a list": (lambda s: s.update(train=[1, 2]), "'train' must be an object"),
    "steps a string": (lambda s: s["train"].update(steps="100"), "'train.steps'"),
    "env_kwargs a list": (lambda s: s.update(env_kwargs=[1]), "'env_kwargs' must be an object"),
    "seed negative": (lambda s: s["train"].update(seed=-1), "'train.seed'"),
    "episode_length a float": (lambda s: s["env_kwargs"].update(episode_length=2.5), "'env_kwargs.episode_length'"),
    "features a string": (lambda s: s["env_kwargs"].update(features="lr"), "'env_kwargs.features'"),
}


@pytest.mark.parametrize("case", [*MALFORMED, "nested 100,000 deep"])
def test_malformed_settings_are_a_checkpoint_error_naming_file_and_field(case, run_dir, tmp_path, capsys):
    path = run_dir / "settings.json"
    if case == "nested 100,000 deep":
        path.write_text('{"agent": "actor-critic", "train": ' + "[" * 100_000 + "]" * 100_000 + "}")
        field = "nested"
    else:
        change, field = MALFORMED[case]
        edit_settings(run_dir, change)
    with pytest.raises(CheckpointError) as exc:
        load_controller(run_dir)
    assert str(path) in str(exc.value) and field in str(exc.value)
    code, err = cli(train_controller.main, ["--resume", run_dir, "--steps", 80, "--no-progress"], capsys)
    assert code == 2 and field in one_clear_line(err)
    code, err = cli(evaluate.main, [run_dir, *EVAL_TINY, "--baselines", "none", "--out", tmp_path / "ev"], capsys)
    assert code == 2 and field in one_clear_line(err)
    from agents.scheduler import ControllerScheduler

    with pytest.raises(CheckpointError, match="settings.json"):
        ControllerScheduler(run_dir, torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1))


@pytest.mark.parametrize("seeds, message", [
    ("100000000000", "at most"),
    (str(2 ** 64), "at most"),
    (f"{2 ** 64},", "out of range"),
    (f"1,{2 ** 70}", "out of range"),
    (",".join(["1"] * 20_000), "at most"),
])
def test_evaluate_seed_range_is_validated(seeds, message, tmp_path, capsys):
    with pytest.raises(ValueError, match=message):
        parse_seeds(seeds)
    code, err = cli(evaluate.main, ["--task", "digits", "--steps", "5", "--seeds", seeds, "--baselines", "sgd",
                                    "--out", tmp_path / "ev"], capsys)
    assert code == 2 and message in one_clear_line(err)
    assert not (tmp_path / "ev").exists()
    assert parse_seeds(f"{2 ** 64 - 1},") == [2 ** 64 - 1]


def test_probe_reward_needs_a_validation_batch():
    from envs import LearningRateEnv

    for reward in ("probe", "validation"):
        with pytest.raises(ValueError, match="validation_batch_size"):
            LearningRateEnv("digits", reward=reward, validation_batch_size=0, device="cpu")
    env = LearningRateEnv("digits", reward="probe", validation_batch_size=5, device="cpu", episode_length=3)
    env.reset(seed=0)
    assert np.isfinite(env.step(np.zeros(1, np.float32))[1])


# =========================================================================== Task.from_tensors
def _data(n_classes=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g)
    y = torch.randint(0, n_classes, (40,), generator=g)
    return x[:30], y[:30], x[30:], y[30:]


def _mlp(out=3):
    return lambda: torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, out))


def test_from_tensors_accepts_a_good_task():
    from envs import Task

    task = Task.from_tensors(*_data(), model_factory=_mlp(), batch_size=np.int64(8))
    assert task.batch_size == 8 and task.classification


@pytest.mark.parametrize("case, error, message", [
    ("labels beyond the outputs", ValueError, r"labels in \[0, 4\].*3 classes"),
    ("test labels beyond the outputs", ValueError, "y_test holds labels"),
    ("negative labels", ValueError, r"labels in \[-1"),
    ("test inputs of another shape", ValueError, "train and test inputs differ"),
    ("test labels of another shape", ValueError, "train and test labels differ"),
    ("float batch_size", TypeError, "batch_size must be an integer"),
    ("str batch_size", TypeError, "batch_size must be an integer"),
    ("bool batch_size", TypeError, "batch_size must be an integer"),
    ("loss without gradient", ValueError, "no gradient"),
    ("model without parameters", ValueError, "no gradient"),
])
def test_from_tensors_checks_at_construction(case, error, message):
    from envs import Task

    x, y, xt, yt = _data()
    kwargs = {"model_factory": _mlp(), "batch_size": 8}
    if case == "labels beyond the outputs":
        y = y.clone()
        y[0] = 4
    elif case == "test labels beyond the outputs":
        yt = yt.clone()
        yt[0] = 3
    elif case == "negative labels":
        y = y.clone()
        y[1] = -1
    elif case == "test inputs of another shape":
        xt = torch.randn(10, 6)
    elif case == "test labels of another shape":
        yt = yt.reshape(-1, 1)
    elif case == "float batch_size":
        kwargs["batch_size"] = 8.5
    elif case == "str batch_size":
        kwargs["batch_size"] = "8"
    elif case == "bool batch_size":
        kwargs["batch_size"] = True
    elif case == "loss without gradient":
        kwargs["loss_fn"] = lambda out, target: torch.nn.functional.cross_entropy(out.detach(), target)
    elif case == "model without parameters":
        kwargs["model_factory"] = lambda: torch.nn.Sequential(torch.nn.Linear(5, 3).requires_grad_(False))
    with pytest.raises(error, match=message):
        Task.from_tensors(x, y, xt, yt, **kwargs)


# =========================================================================== scheduler
class _FakeController:
    env_kwargs = {"episode_length": 10}

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return np.zeros(1, np.float32), state


def test_scheduler_step_takes_one_number():
    from agents.scheduler import ControllerScheduler

    model = torch.nn.Linear(2, 1)
    scheduler = ControllerScheduler(_FakeController(), torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"shape \(2,\).*2 elements"):
        scheduler.step(torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="float or a one-element tensor"):
        scheduler.step("1.0")
    scheduler.step(torch.tensor([1.5]))  # one element is fine
    scheduler.step(torch.tensor(1.5))
    assert scheduler.last_epoch == 2


def test_scheduler_refuses_an_optimizer_without_param_groups():
    from agents.scheduler import ControllerScheduler

    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    optimizer.param_groups.clear()
    with pytest.raises(ValueError, match="no parameter groups"):
        ControllerScheduler(_FakeController(), optimizer)


# =========================================================================== SB3 zip refusal
def _td3_run_with_planted_pickle(tmp_path, member: str, payload) -> tuple:
    """A tiny TD3 run whose ``controller.zip`` member ``member`` is replaced by a pickle that,
    if unpickled, would create ``marker`` (``payload(evil)`` builds the object saved)."""
    import io
    import zipfile

    out = tmp_path / "td3"
    run(["--agent", "td3", "--steps", 45, "--out", out, *TINY, "--learning-starts", "40", "--batch-size", "16"])
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    buffer = io.BytesIO()
    torch.save(payload(Evil()), buffer)
    ckpt = out / "controller.zip"
    with zipfile.ZipFile(ckpt) as z:
        members = {name: z.read(name) for name in z.namelist()}
    assert member in members
    members[member] = buffer.getvalue()
    with zipfile.ZipFile(ckpt, "w") as z:
        for name, content in members.items():
            z.writestr(name, content)
    return out, marker


def test_sb3_zip_refusal_is_ours_not_torchs_advice(tmp_path):
    out, marker = _td3_run_with_planted_pickle(tmp_path, "policy.pth", lambda evil: {"actor": evil})
    with pytest.raises(CheckpointError) as exc:
        load_controller(out)
    message = str(exc.value)
    assert "refusing to load" in message and "could run code" in message
    assert "weights_only" not in message and "Re-running" not in message
    assert not marker.exists()


def test_sb3_resume_state_is_never_unpickled(tmp_path, capsys):
    """The replay buffer and generator states of a DDPG/TD3 checkpoint (its member
    ``lrrl_resume.pt``, agents/snapshot.py) are read with weights_only=True like the rest."""
    from agents.snapshot import SB3_MEMBER

    out, marker = _td3_run_with_planted_pickle(tmp_path, SB3_MEMBER,
                                               lambda evil: {"format": "lrrl-resume/1", "rng": evil})
    code, err = cli(train_controller.main, ["--resume", out, "--steps", 60, "--no-progress"], capsys)
    assert code != 0
    line = one_clear_line(err)
    assert "refusing to load" in line and "weights_only" not in line
    assert not marker.exists()


# =========================================================================== episode counter
class _Killed(Exception):
    pass


@pytest.mark.parametrize("kill_at", [80, 60])  # at an episode's end, and in the middle of one
def test_episode_counter_after_kill_and_resume_matches_an_uninterrupted_run(kill_at, tmp_path, monkeypatch):
    import agents.callbacks

    base = ["--preset", "paper", "--episode-length", "40", "--no-progress", "--log-every", "5"]
    run(["--steps", 120, "--out", tmp_path / "whole", *base, "--checkpoint-every", "0"])
    whole = load_controller(tmp_path / "whole").model._episode_num
    assert whole == 3

    real = agents.callbacks.PeriodicCheckpoint._on_step

    def killed_after_checkpoint(self):
        going_on = real(self)
        if self.num_timesteps == kill_at:  # SIGKILL right after this periodic checkpoint
            raise _Killed
        return going_on

    monkeypatch.setattr(agents.callbacks.PeriodicCheckpoint, "_on_step", killed_after_checkpoint)
    with pytest.raises(_Killed):
        train_controller.main(["--steps", "120", "--out", str(tmp_path / "cut"), *base,
                               "--checkpoint-every", str(kill_at // 2)])
    monkeypatch.undo()
    saved = load_controller(tmp_path / "cut").model
    # a checkpoint holds the last episode boundary (agents/snapshot.py): 80 itself, 40 for one due at 60
    assert saved.num_timesteps == kill_at - kill_at % 40 and saved.interrupted_episode_steps == 0
    run(["--resume", tmp_path / "cut", "--steps", 120, "--no-progress"])
    assert load_controller(tmp_path / "cut").model._episode_num == whole


# =========================================================================== results match the code
def test_evaluate_never_resumes_runs_made_by_other_code(tmp_path, capsys):
    out = tmp_path / "ev"
    argv = [*EVAL_TINY, "--baselines", "sgd", "--grid", "paper", "--out", out]
    assert cli(evaluate.main, argv, capsys)[0] == 0
    runs = sorted((out / "runs").glob("*.json"))
    assert runs and all(json.loads(p.read_text())["common"]["code"] == code_fingerprint() for p in runs)
    capsys.readouterr()
    assert evaluate.main([str(a) for a in argv]) == 0
    assert f"({len(runs)} resumed" in capsys.readouterr().out
    for path in runs:  # as if made by an earlier version of the code
        record = json.loads(path.read_text())
        record["common"]["code"] = "0123456789ab"
        path.write_text(json.dumps(record))
    assert evaluate.main([str(a) for a in argv]) == 0
    assert "(0 resumed" in capsys.readouterr().out
