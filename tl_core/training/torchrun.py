"""torchrun, as ``tl-studio train --nproc N`` starts it: a process that dies is said in words.

``python -m tl_core.training.torchrun RUN_DIR TORCHRUN_ARGS...`` runs torchrun's own launcher
with ``TORCHRUN_ARGS``. When a training process fails, torchrun ends the others and raises an
error whose traceback and table it prints, around log lines of its own. Rank 0 has usually said
what happened already (see ``tl_core.training.lost_processes``): then this prints nothing more.
When rank 0 itself died, nobody did, and this says which process stopped, how, and after which
epoch (read from ``RUN_DIR``). With ``--debug`` as the command's first option, torchrun's
traceback and logs show as they are.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tl_core.runs import METRICS_FILE
from tl_core.training.lost_processes import LIKELY_CAUSE, LOST_PROCESS_HINT, process_stopped

# torchrun's loggers: its warnings ("Sending process ... closing signal") and errors ("failed
# (exitcode: -9)") repeat, in its own terms, what the sentence says; its note on the threads
# each process uses is for those who tune torchrun.
TORCHRUN_LOGGERS = (
    "torch.distributed.elastic",
    "torch.distributed.run",
    "torch.distributed.launcher",
)
CLI_MODULE = "tl_core.cli"


def main(argv: Sequence[str]) -> int:
    run_dir, torchrun_args = Path(argv[0]), list(argv[1:])
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    debug = _command_args(torchrun_args)[:1] == ["--debug"]
    if not debug:
        _quiet_torchrun_logs()
    try:
        run(parse_args(torchrun_args))
    except ChildFailedError as exc:
        if debug:
            raise
        _report(exc, run_dir, _world_size(torchrun_args))
        return 1
    return 0


def _command_args(torchrun_args: list[str]) -> list[str]:
    """The arguments of the command torchrun runs in each process (after ``-m tl_core.cli``)."""
    for index, arg in enumerate(torchrun_args[:-1]):
        if arg == "-m" and torchrun_args[index + 1] == CLI_MODULE:
            return torchrun_args[index + 2 :]
    return []


def _world_size(torchrun_args: list[str]) -> int | None:
    for arg in torchrun_args:
        if arg.startswith("--nproc_per_node="):
            return int(arg.split("=", 1)[1])
    return None


def _quiet_torchrun_logs() -> None:
    """Keeps only torchrun's critical log records; the others reach no terminal."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.name.startswith(TORCHRUN_LOGGERS) or record.levelno >= logging.CRITICAL

    for name in ("torch", "torch.distributed", ""):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(keep)


def _report(exc, run_dir: Path, world: int | None) -> None:
    """Says which process stopped, unless rank 0 reported the failure itself: it then recorded
    it in metrics.json, or exited with an error code (when even that could not be written)."""
    main_failure = exc.failures.get(0)
    if _recorded_status(run_dir) == "failed" or (main_failure and main_failure.exitcode > 0):
        return
    rank, failure = exc.get_first_failure()
    which = f"Process {rank + 1} of {world}" if world else f"Training process {rank + 1}"
    cause = LIKELY_CAUSE
    if failure.exitcode < 0:
        cause = f"ended by {failure.signal_name()}: {LIKELY_CAUSE}"
    print(f"error: {process_stopped(which, _epochs_done(run_dir), cause)}", file=sys.stderr)
    print(f"hint: {LOST_PROCESS_HINT}", file=sys.stderr)


def _metrics(run_dir: Path) -> dict:
    try:
        metrics = json.loads((run_dir / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def _recorded_status(run_dir: Path) -> str | None:
    return _metrics(run_dir).get("status")


def _epochs_done(run_dir: Path) -> int | None:
    history = _metrics(run_dir).get("history")
    return len(history) if isinstance(history, list) else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
