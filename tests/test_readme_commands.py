"""The README's commands, run as printed.

Every ``python -m embryo_xai…`` line of the README's ``bash`` blocks is run in a temporary copy of
the repository, block by block (each block is a sequence a user pastes into a fresh clone), from
the copy's root, with the default configs. The test may only append size-shrinking overrides
(epochs, batches, videos, frames, images, steps, trials: ``SHRINK_KEYS``), never ``paths.*`` or
``hydra.*`` (the one exception is ``hydra.sweeper.n_trials``, a count), so the README and the code
cannot drift apart: a README command that fails, or that names an entry point this file cannot
shrink, fails here. Blocks made only of cheap commands run in the default suite, the rest are
marked slow; a block that needs what this machine lacks (a GPU, SLURM, the real data set) is
skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO

README = REPO / "README.md"
PREFIX = ("python", "-m")
#: Keys the test may append, all of them size-shrinking; anything else appended fails the test.
SHRINK_KEYS = {
    "trainer.max_epochs", "++trainer.limit_train_batches", "++trainer.limit_val_batches",
    "++trainer.limit_test_batches", "data.synthetic.videos", "++data.synthetic.frames_per_video",
    "data.batch_size", "data.eval_batch_size", "n_images", "batch_size", "metrics.max_steps",
    "callbacks.faithfulness.n_images", "method.num_masks", "bootstrap", "hydra.sweeper.n_trials",
    "--videos", "--frames-per-video", "models",
}
TRAIN_SHRINK = ["trainer.max_epochs=1", "++trainer.limit_train_batches=2", "++trainer.limit_val_batches=2",
                "++trainer.limit_test_batches=2", "data.synthetic.videos=6", "++data.synthetic.frames_per_video=40",
                "data.batch_size=4", "data.eval_batch_size=8"]
FAITHFULNESS_SHRINK = ["n_images=2", "batch_size=2", "metrics.max_steps=4"]


@dataclass
class Command:
    line: str  # as printed (continuations joined, comment stripped)
    argv: list[str]

    @property
    def module(self) -> str:
        return self.argv[2]

    @property
    def overrides(self) -> list[str]:
        return self.argv[3:]

    def has(self, token: str) -> bool:
        return token in self.overrides or any(a.startswith(token) for a in self.overrides)


def readme_blocks(text: str) -> list[tuple[str, list[Command]]]:
    """(title, commands) of each ``bash`` block holding a ``python -m embryo_xai`` line; the title is
    the nearest heading above it."""
    blocks, heading = [], "README"
    for match in re.finditer(r"^(#{2,4} [^\n]+)$|^```bash\n(.*?)^```", text, flags=re.M | re.S):
        if match.group(1):
            heading = match.group(1).lstrip("# ").strip()
            continue
        joined = re.sub(r"\\\n\s*", " ", match.group(2))
        commands = []
        for line in joined.splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:2] == list(PREFIX) and len(argv) > 2 and argv[2].startswith("embryo_xai"):
                commands.append(Command(" ".join(argv), argv))
        if commands:
            blocks.append((heading, commands))
    return blocks


def shrink(command: Command) -> list[str]:
    """The size-shrinking arguments appended to one command; a module we cannot shrink fails."""
    module = command.module
    if module == "embryo_xai.data.synthetic":
        return ["--videos", "4", "--frames-per-video", "40"]
    if module in ("embryo_xai.data.summary",):
        return []
    if module == "embryo_xai.train":
        extra = list(TRAIN_SHRINK)
        if command.has("callbacks=faithfulness"):
            extra += ["callbacks.faithfulness.n_images=2", "metrics.max_steps=4"]
        if command.has("hparams_search=optuna"):
            extra += ["hydra.sweeper.n_trials=2"]
        return extra
    if module == "embryo_xai.faithfulness":
        extra = list(FAITHFULNESS_SHRINK)
        if "method=rise" in command.overrides:
            extra += ["method.num_masks=100"]
        return extra
    if module == "embryo_xai.report":
        return ["bootstrap=20"]
    if module == "embryo_xai.main":  # quoted list items: an unquoted '=' inside a Hydra list is a syntax error
        return ["models=[cnn,abn]", f"extra.train=[{','.join(map(repr, TRAIN_SHRINK))}]",
                f"extra.faithfulness=[{','.join(map(repr, FAITHFULNESS_SHRINK))}]"]
    pytest.fail(f"README command `{command.line}`: no shrinking rule for module {module!r}; add one here")


def check_shrink_keys(extra: list[str]) -> None:
    """The rule of this file, enforced: only size-shrinking keys, never paths.* or hydra.* (bar n_trials)."""
    for arg in extra:
        key, _, value = arg.partition("=")
        keys = [key]
        if key.startswith("extra."):  # the study runner's extra.<step>=['KEY=VALUE',...]: overrides of those steps
            keys = [item.split("=", 1)[0] for item in re.findall(r"'([^']*)'", value)]
        for key in keys:
            if key.isdigit():
                continue  # values of --videos / --frames-per-video
            assert key in SHRINK_KEYS, f"appended override {arg!r} is not a size-shrinking key"
            assert not key.startswith(("paths.", "hydra.")) or key == "hydra.sweeper.n_trials", arg


def missing_requirements(commands: list[Command]) -> list[str]:
    reasons = []
    for c in commands:
        needs_cuda = any(a in ("trainer=gpu", "trainer=ddp", "experiment=paper", "device=cuda") for a in c.overrides)
        needs_cuda |= c.module == "embryo_xai.main" and "study=paper" in c.overrides
        if needs_cuda and not torch.cuda.is_available():
            reasons.append(f"`{c.line}` needs a CUDA device")
        if c.has("hydra/launcher=submitit_slurm") and shutil.which("sbatch") is None:
            reasons.append(f"`{c.line}` needs SLURM (sbatch)")
        real = [a.split("=", 1)[-1] for a in c.overrides if a.startswith("data.root=")]
        real += [c.overrides[i + 1] for i, a in enumerate(c.overrides[:-1]) if a == "--root"]
        if c.has("data=real") or any(p.startswith("/") and not Path(p).exists() for p in real):
            reasons.append(f"`{c.line}` needs the real data set at {real[0] if real else 'data.root'}")
    return reasons


def is_cheap(command: Command) -> bool:
    """Seconds, not minutes, once shrunk: runs in the default suite."""
    if command.module in ("embryo_xai.data.synthetic", "embryo_xai.data.summary", "embryo_xai.faithfulness"):
        return True
    if command.module == "embryo_xai.report":
        return command.has("table1_csv=")
    if command.module == "embryo_xai.train":
        return "experiment=demo" in command.overrides and "-m" not in command.overrides and not command.has("trainer=")
    return False


def copy_repository(dest: Path) -> Path:
    for name in ("conf", "embryo_xai"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "best_*.yaml"))
    shutil.copytree(REPO / "tests" / "data", dest / "tests" / "data")
    return dest


def run_readme_command(command: Command, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    extra = shrink(command)
    check_shrink_keys(extra)
    return subprocess.run([sys.executable, *command.argv[1:], *extra], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1800)


def faithfulness_runs_written(command: Command, outputs: Path) -> list[str]:
    """The run dirs a faithfulness command must have written: one per (model, method) of a sweep."""
    values = {k: v.split(",") for k, _, v in (a.partition("=") for a in command.overrides) if k in ("model", "method")}
    run_name = next((a.split("=", 1)[1] for a in command.overrides if a.startswith("run_name=")), None)
    names = [run_name] if run_name else [f"{m}-{t}" for m in values.get("model", ["cnn"])
                                         for t in values.get("method", ["gradcampp"])]
    return [n for n in names if not (outputs / "faithfulness" / n / "faithfulness_rows.csv").is_file()]


def readme_params() -> list:
    params = []
    for index, (title, commands) in enumerate(readme_blocks(README.read_text())):
        marks = [pytest.mark.slow] if not all(is_cheap(c) for c in commands) else []
        params.append(pytest.param(commands, id=f"{index:02d}-{re.sub(r'[^a-z0-9]+', '-', title.lower())}",
                                   marks=marks))
    return params


def test_readme_has_the_headline_commands():
    lines = [c.line for _, commands in readme_blocks(README.read_text()) for c in commands]
    assert "python -m embryo_xai.faithfulness -m method=gradcampp,scorecam" in lines
    assert "python -m embryo_xai.train model=brnpa" in lines
    assert len(lines) >= 20


def test_shrink_rejects_paths_and_hydra_keys():
    with pytest.raises(AssertionError):
        check_shrink_keys(["paths.log_dir=/tmp/x"])
    with pytest.raises(AssertionError):
        check_shrink_keys(["hydra.run.dir=/tmp/x"])
    with pytest.raises(AssertionError):
        check_shrink_keys(["extra.report=['paths.log_dir=/tmp/x']"])
    check_shrink_keys(shrink(Command("", ["python", "-m", "embryo_xai.main"])))


@pytest.mark.parametrize("commands", readme_params())
def test_readme_block_runs_as_printed(commands: list[Command], tmp_path: Path):
    reasons = missing_requirements(commands)
    if reasons:
        pytest.skip("; ".join(reasons))
    repo = copy_repository(tmp_path / "clone")
    env = {**os.environ, "PYTHONPATH": str(repo), "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
    for command in commands:
        result = run_readme_command(command, repo, env)
        output = (result.stdout + result.stderr)[-4000:]
        assert result.returncode == 0, f"`{command.line}` failed (exit {result.returncode}):\n{output}"
        if command.module == "embryo_xai.faithfulness":
            missing = faithfulness_runs_written(command, repo / "outputs")
            assert not missing, f"`{command.line}` did not write the runs {missing}:\n{output}"


def test_headline_multirun_from_another_directory(tmp_path: Path):
    """Run from a directory that is not the repository: outputs go under it, or under paths.root_dir."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
    train = Command("", ["python", "-m", "embryo_xai.train", "experiment=demo"])
    sweep = Command("", ["python", "-m", "embryo_xai.faithfulness", "-m", "method=gradcampp,scorecam"])
    for command in (train, sweep):
        result = run_readme_command(command, elsewhere, env)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert not faithfulness_runs_written(sweep, elsewhere / "outputs")
    assert list((elsewhere / "data" / "synthetic_demo" / "embryo_dataset").iterdir())
    explicit = tmp_path / "explicit_root"
    train_run = next((elsewhere / "outputs" / "train" / "runs").iterdir())
    result = run_readme_command(Command("", [*sweep.argv, f"paths.root_dir={explicit}", f"train_run={train_run}"]),
                                elsewhere, env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert not faithfulness_runs_written(sweep, explicit / "outputs")
