"""The one scheduler of heavy work: one job runs at a time, the others wait in line, in order.

Training, groups of runs, backbone comparisons, label-error searches and the learning-rate
finder all want the whole processor (or GPU); two at once would each run at half speed and
may run out of memory. So a job submitted while another runs is queued rather than refused:
on a shared workstation, two people pressing Start both get their run, one after the other.
A job that fails or stops hands over to the next like one that completes; a queued job can be
cancelled before its turn.

The line is kept in a small JSON file in the workspace, so a server that stops (or crashes)
with jobs running or waiting says so after a restart: those jobs come back as "interrupted".
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tl_core.auto import SearchSettings
from tl_core.common import write_json
from tl_core.config import TrainConfig
from tl_core.jobs.auto_job import AutoJob
from tl_core.jobs.job import Job
from tl_core.jobs.processes import ProcessJob
from tl_core.jobs.snapshot import TRAIN, TRAINING_KINDS
from tl_core.jobs.training_job import TrainingJob
from tl_core.runs import RunWriter, new_run_dir

QUEUE_FILE = "jobs.json"  # in the workspace: the jobs running or waiting, and lost ones
logger = logging.getLogger(__name__)


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, ... 21st."""
    if 10 <= number % 100 <= 20:
        return f"{number}th"
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th') }"


def queued_message(place: int, ahead: str) -> str:
    """What a waiting job says: "Queued, 2nd in line, after Training resnet18 on flowers"."""
    return f"Queued, {ordinal(place)} in line, after {ahead}"


@dataclass(frozen=True)
class InterruptedJob:
    """A job that was running or waiting when the server stopped: it will not run now.

    Attributes:
        was: "running" or "queued": where it was when the server stopped.
    """

    job_id: str
    kind: str
    title: str
    was: str

    @property
    def sentence(self) -> str:
        return f"Interrupted: the server stopped while this job was {self.was}; start it again."

    def to_dict(self) -> dict:
        return {"job_id": self.job_id, "kind": self.kind, "title": self.title, "was": self.was}


class JobScheduler:
    """Every job of this process, and the line they run in: at most one runs at a time.

    Args:
        runs_root: Where new run and group folders are created.
        feature_cache: Where head-only runs keep and find backbone features (None: nowhere).
        queue_file: Where the line is kept between server starts (None: nowhere). Jobs
            that file lists as running or queued when the scheduler starts are reported by
            ``interrupted``.
    """

    def __init__(
        self,
        runs_root: str | Path,
        feature_cache: str | Path | None = None,
        queue_file: str | Path | None = None,
    ):
        self.runs_root = Path(runs_root)
        self.feature_cache = feature_cache
        self.queue_file = Path(queue_file) if queue_file is not None else None
        self._jobs: dict[str, Job] = {}  # in the order they were submitted
        self._running: Job | None = None
        self._waiting: list[Job] = []
        self._lock = threading.Lock()
        self._interrupted = self._recover()
        with self._lock:
            self._save_locked()

    # ------------------------------------------------------------------ submitting

    def submit(self, job: Job) -> Job:
        """Starts ``job`` now if nothing runs, or queues it behind the jobs already waiting."""
        with self._lock:
            if job.kind not in TRAINING_KINDS:
                self._forget_older_answers_locked(job)
            self._jobs[job.job_id] = job
            job.when_ended = self._ended
            if self._running is None:
                self._running = job
                job.start()
            else:
                self._waiting.append(job)
                self._renumber_locked()
            self._save_locked()
        return job

    def start(
        self,
        config: TrainConfig,
        kind: str = TRAIN,
        depths: Sequence[str] | None = None,
        nproc: int = 1,
    ) -> TrainingJob:
        """Submits training: one run in a new folder, or a sweep or transfer check in a new
        group folder, made when the job's turn comes (a waiting job leaves no folder).

        With ``nproc`` above 1, one run trains in that many processes of its own (one per
        GPU, see ``tl_core.jobs.processes``).
        """
        root = self.runs_root
        if kind == TRAIN and nproc > 1:
            # Rank 0 of the processes claims the folder; a timestamped name keeps it new.
            job = ProcessJob(
                config, lambda: new_run_dir(root, config.backbone), nproc, self.feature_cache
            )
        elif kind == TRAIN:
            claim = lambda: RunWriter.create_new(root, config.backbone)  # noqa: E731
            job = TrainingJob(config, claim, kind, depths, self.feature_cache)
        else:  # the group claims its folder itself; a timestamped name keeps it new
            claim = lambda: new_run_dir(root, f"{kind}-{config.backbone}")  # noqa: E731
            job = TrainingJob(config, claim, kind, depths, self.feature_cache)
        self.submit(job)
        return job

    def start_auto(self, settings: SearchSettings) -> AutoJob:
        """Submits the automatic search into a new group folder, made when its turn comes."""
        if settings.feature_cache is None:
            settings = dataclasses.replace(settings, feature_cache=self.feature_cache)
        name = f"auto-{Path(settings.data).name}"
        job = AutoJob(settings, lambda: new_run_dir(self.runs_root, name))
        self.submit(job)
        return job

    def cancel(self, job_id: str) -> bool:
        """Takes a waiting job out of the line and forgets it: it never runs, and a page that
        showed it finds the job that runs instead. False if it is not waiting."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job not in self._waiting:
                return False
            self._waiting.remove(job)
            del self._jobs[job_id]
            job.cancel()
            self._renumber_locked()
            self._save_locked()
            return True

    def _ended(self, job: Job) -> None:
        """A job ended (however it ended): the next one waiting starts."""
        with self._lock:
            if self._running is job:
                self._running = None
            while self._running is None and self._waiting:
                candidate = self._waiting.pop(0)
                if candidate.is_queued:  # not cancelled behind the scheduler's back
                    self._running = candidate
                    candidate.start()
            self._renumber_locked()
            self._save_locked()

    def _renumber_locked(self) -> None:
        ahead = self._running
        for place, job in enumerate(self._waiting, start=2):
            job.queue(place, queued_message(place, ahead.title if ahead else "the running job"))
            ahead = job

    def _forget_older_answers_locked(self, job: Job) -> None:
        """An analysis's older, finished answer for the same images is replaced by the new."""
        self._jobs = {
            key: kept
            for key, kept in self._jobs.items()
            if not (kept.kind == job.kind and kept.dataset == job.dataset and kept.has_ended)
        }

    # ------------------------------------------------------------------ reading

    def get(self, job_id: str | None) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id) if job_id else None

    def active(self, kinds: Sequence[str] | None = None) -> Job | None:
        """The job running now (of one of ``kinds``, if given), or None."""
        with self._lock:
            job = self._running
        if job is None or not job.is_active or (kinds is not None and job.kind not in kinds):
            return None
        return job

    def latest(self, kinds: Sequence[str] | None = None, dataset: str | None = None) -> Job | None:
        """The newest job (of ``kinds``, on ``dataset``, if given): waiting, running or ended."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in reversed(jobs):
            if (kinds is None or job.kind in kinds) and (dataset is None or job.dataset == dataset):
                return job
        return None

    def line(self) -> list[Job]:
        """The job running, then the jobs waiting, in the order they will run."""
        with self._lock:
            return [job for job in (self._running, *self._waiting) if job is not None]

    def next_place(self) -> int:
        """The place a job submitted now would take: 1 runs at once, 2 waits for one job."""
        return len(self.line()) + 1

    def datasets_in_use(self) -> list[str]:
        """The datasets that the running and waiting jobs read (not to be deleted)."""
        return [job.dataset for job in self.line()]

    # ------------------------------------------------------------------ after a restart

    def interrupted(self) -> list[InterruptedJob]:
        """Jobs that were running or waiting when the server last stopped, oldest first."""
        with self._lock:
            return list(self._interrupted)

    def dismiss(self, job_id: str) -> None:
        """Forgets an interrupted job, once the user has read about it."""
        with self._lock:
            self._interrupted = [job for job in self._interrupted if job.job_id != job_id]
            self._save_locked()

    def _recover(self) -> list[InterruptedJob]:
        """The jobs an earlier server left running or waiting (or already interrupted)."""
        if self.queue_file is None or not self.queue_file.is_file():
            return []
        try:
            entries = json.loads(self.queue_file.read_text())["jobs"]
            return [
                InterruptedJob(
                    str(entry["job_id"]),
                    str(entry["kind"]),
                    str(entry["title"]),
                    str(entry.get("was") or entry["status"]),
                )
                for entry in entries
            ]
        except (OSError, ValueError, KeyError, TypeError) as error:
            # A damaged file costs the notice of lost jobs, never the app.
            logger.warning("Ignoring the unreadable job queue %s: %s", self.queue_file, error)
            return []

    def _save_locked(self) -> None:
        if self.queue_file is None:
            return
        entries = [{**job.to_dict(), "status": "interrupted"} for job in self._interrupted]
        for job in (self._running, *self._waiting):
            if job is not None:
                status = "queued" if job in self._waiting else "running"
                entries.append(
                    {"job_id": job.job_id, "kind": job.kind, "title": job.title, "status": status}
                )
        try:
            write_json(self.queue_file, {"jobs": entries})
        except OSError as error:  # a full disk must not stop the line
            logger.warning("Could not save the job queue to %s: %s", self.queue_file, error)
