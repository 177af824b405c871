"""A training job run by ``tl-studio train --nproc N`` in processes of its own, followed live.

Training on several GPUs needs one process per GPU (DistributedDataParallel, started through
torchrun), which a thread of the app cannot be. This job starts the command line instead and
replays the events rank 0 writes (``--events``, see ``tl_core.jobs.events``) into the same state
a thread's job keeps: the Train page, its live charts and the sidebar work unchanged, batch by
batch. Stop, pause and resume are signals to the launcher, which passes them to rank 0; every
rank then stops or pauses at the same batch (``tl_core.training.distributed.checkpoint``).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tl_core.common import TLStudioError
from tl_core.config import TrainConfig, write_train_config
from tl_core.jobs.events import replay
from tl_core.jobs.training_job import TRAIN, TrainingJob
from tl_core.runs import METRICS_FILE, RunWriter, read_json
from tl_core.training import distributed

ERROR_PREFIX, HINT_PREFIX = "error: ", "hint: "  # how the command line reports a failure


class ProcessJobError(TLStudioError):
    """The training processes failed; the message is the command line's own."""


def _after(prefix: str, lines: list[str]) -> str | None:
    """The rest of the first line that starts with ``prefix``."""
    return next((line.removeprefix(prefix) for line in lines if line.startswith(prefix)), None)


def failure_from(stderr: str, exit_code: int) -> ProcessJobError:
    """The command line's "error:" and "hint:" lines as an error, or its last words."""
    lines = stderr.strip().splitlines()
    message = _after(ERROR_PREFIX, lines)
    hint = _after(HINT_PREFIX, lines) or ""
    if message is None:
        tail = " ".join(lines[-3:]) or "no output"
        message = f"The training processes ended with exit code {exit_code}: {tail}"
        hint = hint or "Run the same training with `tl-studio train --nproc N` to see it in full."
    return ProcessJobError(message, hint)


class ProcessJob(TrainingJob):
    """One run trained by ``nproc`` processes through the command line.

    Args:
        config: The run's settings.
        run_dir: The new run folder (rank 0 claims it; it must not exist yet).
        nproc: Processes to train in: one per GPU, or CPU processes.
        feature_cache: Where head-only runs find and keep backbone features (None: nowhere).
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        nproc: int,
        feature_cache: str | Path | None = None,
    ):
        super().__init__(config, run_dir, TRAIN, feature_cache=feature_cache)
        self.nproc = nproc
        self._process: subprocess.Popen | None = None

    def command(self, run_dir: Path, config_file: Path) -> list[str]:
        """``tl-studio train`` with the settings in ``config_file`` (this job's, as
        ``write_train_config`` writes them), in ``nproc`` processes, with events."""
        cache = ["--cache-dir", str(self.feature_cache)] if self.feature_cache else []
        return [
            sys.executable,
            "-m",
            "tl_core.cli",
            "train",
            *("--config", str(config_file)),
            *(cache or ["--no-feature-cache"]),
            *("--nproc", str(self.nproc), "--events", "--quiet", "--out", str(run_dir)),
        ]

    def _train(self, config: TrainConfig, run_dir: str | Path | RunWriter) -> str:
        del config  # the command carries it
        run_dir = Path(run_dir)
        with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryFile("w+") as stderr:
            config_file = write_train_config(self.config, Path(folder) / "train.json")
            process = subprocess.Popen(
                self.command(run_dir, config_file),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,  # a signal to the app is not one to the training
            )
            with self._lock:
                self._process = process
                stop_now = self._control.stop_requested  # asked for before it started
            if stop_now:
                self._signal_stop()
            for line in process.stdout:
                replay(line.rstrip("\n"), self._observer)
            exit_code = process.wait()
            stderr.seek(0)
            errors = stderr.read()
        status = self._recorded_status(run_dir)
        if status is None and self._control.stop_requested:
            return "stopped"  # stopped before rank 0 claimed the folder: nothing to keep
        if exit_code != 0 or status not in ("completed", "stopped"):
            raise failure_from(errors, exit_code)
        return status

    @staticmethod
    def _recorded_status(run_dir: Path) -> str | None:
        try:
            return read_json(run_dir / METRICS_FILE).get("status")
        except (TLStudioError, AttributeError):
            return None

    def _signal(self, number: int) -> None:
        # The launcher passes each signal on to rank 0 (tl_core.training.distributed.launch).
        with contextlib.suppress(ProcessLookupError, AttributeError):
            self._process.send_signal(number)

    def _signal_stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal_if_running(self, number: int) -> None:
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._signal(number)

    def pause(self) -> None:
        """Pauses every process before its next batch; "paused" once rank 0 says so.

        Not before rank 0 has reported its plan: until then its command line may not listen
        for the signal yet, and a pause would wait for an answer that never comes.
        """
        with self._lock:
            ready = self._state.status == "running"
        if ready:
            super().pause()
            self._signal_if_running(distributed.PAUSE_SIGNAL)

    def resume(self) -> None:
        super().resume()
        self._signal_if_running(distributed.RESUME_SIGNAL)

    def stop(self) -> None:
        super().stop()
        self._signal_if_running(signal.SIGTERM)
