"""Training on several processes at once (one per GPU, or CPU processes), launched by torchrun.

Everything about ``torch.distributed`` lives here, so the trainer only calls small hooks that do
nothing in a single process: when a process was not started by torchrun (no ``RANK`` and
``WORLD_SIZE`` in its environment) and no process group is up, every helper below answers as a
lone process would (rank 0 of 1) and performs no communication.

Under torchrun, every process (a "rank") runs the same training code in lockstep:

* rank 0 (the "main" process) scans and splits the data and broadcasts the result, so the split
  is decided once; it alone writes the run folder (the others write through a
  :class:`ReplicaRunWriter`, which writes nothing) and prints;
* the model trains in ``DistributedDataParallel`` over a ``DistributedSampler`` per epoch;
* epoch metrics are summed over the ranks, so every rank sees the global numbers;
* a stop is agreed on every batch (an all-reduce of each rank's flag with MAX), because a rank
  that stopped alone would leave the others waiting forever in their next collective.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from tl_core.common import JobControl, TLStudioError, TrainingStopped, resolve_device
from tl_core.runs import LOCK_FILE, RunWriter

T = TypeVar("T")

# What torchrun sets in each process it starts.
RANK_ENV, WORLD_SIZE_ENV, LOCAL_RANK_ENV = "RANK", "WORLD_SIZE", "LOCAL_RANK"
MAIN_RANK = 0


# ---- who am I ----------------------------------------------------------------------------------


def launched() -> bool:
    """Whether torchrun started this process (its environment names a rank and a world)."""
    return RANK_ENV in os.environ and WORLD_SIZE_ENV in os.environ


def is_active() -> bool:
    """Whether a process group is up, so collectives really communicate."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank: from the process group, else torchrun's environment, else 0."""
    if is_active():
        return dist.get_rank()
    return int(os.environ.get(RANK_ENV, MAIN_RANK)) if launched() else MAIN_RANK


def world_size() -> int:
    """How many processes train together (1 without torchrun)."""
    if is_active():
        return dist.get_world_size()
    return int(os.environ.get(WORLD_SIZE_ENV, 1)) if launched() else 1


def is_main() -> bool:
    """Whether this process writes the run folder and prints (rank 0, or a lone process)."""
    return rank() == MAIN_RANK


def local_rank() -> int:
    return int(os.environ.get(LOCAL_RANK_ENV, 0)) if launched() else 0


def local_device(device: torch.device) -> torch.device:
    """The device this process trains on: under torchrun, CUDA means its own GPU (the local
    rank's), made current for the calling thread so nothing lands on GPU 0 by default."""
    if device.type != "cuda" or not launched():
        return device
    index = local_rank()
    if index >= torch.cuda.device_count():
        raise TLStudioError(
            f"Process {index + 1} needs GPU {index}, but only "
            f"{torch.cuda.device_count()} GPU(s) are visible.",
            "Start at most one process per GPU (--nproc, or torchrun's --nproc_per_node).",
        )
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


@contextlib.contextmanager
def process_group(device_name: str = "auto") -> Iterator[None]:
    """Joins torchrun's process group for the block (NCCL on CUDA, gloo on the CPU), and
    leaves it at the end; does nothing in a process torchrun did not start.

    Args:
        device_name: The run's device setting ("auto", "cpu" or "cuda").
    """
    if not launched() or is_active():
        yield
        return
    device = local_device(resolve_device(device_name))
    if device.type == "cuda":
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    # NCCL only moves CUDA tensors; gloo moves CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


# ---- communication -----------------------------------------------------------------------------


def sum_across(values: Sequence[float]) -> tuple[float, ...]:
    """Each value summed over every rank (the values themselves in a lone process)."""
    if not is_active():
        return tuple(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tuple(tensor.tolist())


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on at least one rank (an all-reduce with MAX)."""
    if not is_active():
        return flag
    tensor = torch.tensor([int(flag)], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def broadcast_from_main(value: T) -> T:
    """Rank 0's ``value``, on every rank (any picklable object)."""
    if not is_active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=MAIN_RANK, device=_collective_device())
    return box[0]


def decided_by_main(decide: Callable[[], T]) -> T:
    """Runs ``decide`` on rank 0 only and gives its result to every rank.

    An error raised there is raised on every rank too, so no rank waits for a result that
    never comes (the split of the data, for instance, fails the same way everywhere).
    """
    if not is_active():
        return decide()
    outcome: tuple[bool, object] = (True, None)
    if is_main():
        try:
            outcome = (True, decide())
        except Exception as exc:  # re-raised below, on every rank
            outcome = (False, exc)
    ok, value = broadcast_from_main(outcome)
    if not ok:
        raise value
    return value


def require_same(value: object, what: str) -> None:
    """Raises on every rank when ``value`` (picklable, printed with ``repr``) is not the same
    on all of them: the ranks would otherwise train on different things, or hang."""
    if not is_active():
        return
    digest = hashlib.sha256(repr(value).encode()).hexdigest()
    if any_rank(broadcast_from_main(digest) != digest):
        raise TLStudioError(
            f"The training processes disagree on {what}.",
            "Make sure no other program changes the images or the feature cache while "
            "several processes train, then start again.",
        )


def all_gather(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (the same shape on each), in rank order, on the CPU."""
    if not is_active():
        return [tensor]
    device = _collective_device()
    local = tensor.to(device).contiguous()
    parts = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(parts, local)
    return [part.cpu() for part in parts]


# The signals that pause and resume a training run from outside (the app, or `kill -USR1 PID`):
# the command line's train and its launcher honour them.
PAUSE_SIGNAL, RESUME_SIGNAL = signal.SIGUSR1, signal.SIGUSR2
PAUSE_POLL_SECONDS = 1.0  # while paused, how often the ranks agree again on what to do


def _agreed_state(control: JobControl) -> tuple[bool, bool]:
    """(stop, pause): whether any rank's control asks for a stop, and for a pause."""
    flags = [int(control.stop_requested), int(control.paused)]
    tensor = torch.tensor(flags, dtype=torch.int32, device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    stop, pause = tensor.tolist()
    return bool(stop), bool(pause)


def checkpoint(control: JobControl, on_pause: Callable[[bool], None] | None = None) -> float:
    """``control.checkpoint`` for a batch boundary, with every rank agreeing on it.

    A pause or a stop asked of any rank (in practice rank 0, which the launcher and the app
    signal) reaches every rank before the same batch. While paused, the ranks wait together and
    agree again every ``PAUSE_POLL_SECONDS``: no exchange waits long enough to time out, and a
    resume or a stop asked of any rank ends the pause everywhere.

    Returns:
        Seconds spent paused.
    """
    if not is_active():
        return control.checkpoint(on_pause)
    stop, pause = _agreed_state(control)
    paused_for = 0.0
    if pause and not stop:
        started = time.monotonic()
        if on_pause:
            on_pause(True)
        while pause and not stop:
            control.wait_for_resume(PAUSE_POLL_SECONDS)
            stop, pause = _agreed_state(control)
        if on_pause:
            on_pause(False)
        paused_for = time.monotonic() - started
    # Never stop before agreeing: a rank that stopped alone would hang the others.
    if stop:
        control.stop()
        raise TrainingStopped
    return paused_for


# ---- sharing the data --------------------------------------------------------------------------


def share_size(count: int) -> int:
    """How many of ``count`` items each rank gets from :func:`padded_share` (and from a
    DistributedSampler, which pads the same way)."""
    return math.ceil(count / world_size()) if count else 0


def padded_share(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th item from its rank on, the list
    first padded with its own first items so that every rank gets exactly as many (equal
    batch counts keep the per-batch collectives in step). Item ``i`` of the whole is item
    ``i // world_size`` of rank ``i % world_size``'s share."""
    world = world_size()
    if world == 1:
        return list(items)
    padded = list(itertools.islice(itertools.cycle(items), share_size(len(items)) * world))
    return padded[rank() :: world]


def interleave_shares(shares: Sequence[Sequence[T]], count: int) -> list[T]:
    """The ``count`` items of the whole, in order, from every rank's :func:`padded_share`."""
    world = len(shares)
    return [shares[i % world][i // world] for i in range(count)]


def shuffling_sampler(dataset: Dataset, seed: int) -> DistributedSampler | None:
    """A training sampler giving this rank its share, reshuffled each epoch from ``seed``
    (see :func:`set_epoch`); None in a lone process (the loader shuffles itself)."""
    if not is_active():
        return None
    return DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=False)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Reseeds a DistributedSampler for ``epoch``; without it, every epoch would repeat the
    first epoch's order. Any other loader (or batch iterable) is left alone."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


# ---- the model ---------------------------------------------------------------------------------


class _TrainingForward(torch.nn.Module):
    """The trainer's forward path as a module for DDP: the whole model on images, the head on
    cached features, or the layers after a frozen prefix. ``owner`` is registered so DDP sees
    its parameters (those frozen are ignored), whatever part of it the path runs."""

    def __init__(self, owner: torch.nn.Module, forward: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.owner = owner
        self._path = forward

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._path(inputs)


def data_parallel(
    model: torch.nn.Module, forward: Callable[[torch.Tensor], torch.Tensor]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``forward`` wrapped in DistributedDataParallel over ``model``'s trainable parameters,
    so every backward averages the gradients over the ranks; ``forward`` itself in a lone
    process, or when nothing trains.

    Build it again whenever the trainable parameters change (a gradual-unfreezing stage):
    DDP fixes the set it synchronises when it is built. Use it for training steps only:
    each of its forward passes also broadcasts rank 0's buffers (a collective), which an
    evaluation must not do.
    """
    if not is_active() or not any(p.requires_grad for p in model.parameters()):
        return forward
    device = next(model.parameters()).device
    return DistributedDataParallel(
        _TrainingForward(model, forward),
        device_ids=[device.index] if device.type == "cuda" else None,
    )


# ---- the run folder ----------------------------------------------------------------------------


class ReplicaRunWriter(RunWriter):
    """The run folder as a rank other than 0 sees it: it claims nothing and writes nothing.

    Every ``write_*`` method of :class:`RunWriter` (those added later too) does nothing, so the
    trainer runs the same code on every rank and only rank 0's writer touches the disk.
    """

    def __init__(self, path: str | Path):
        super().__init__(path, lock=None, created=False)

    def __getattribute__(self, name: str):
        if name.startswith("write_"):
            return _write_nothing
        return super().__getattribute__(name)

    def discard(self) -> None:
        """The folder is rank 0's: it discards it."""


def _write_nothing(*_args, **_kwargs) -> None:
    return None


def run_writer(path: str | Path) -> RunWriter:
    """Claims the run folder on rank 0 (see :meth:`RunWriter.create`); a writer that writes
    nothing on every other rank."""
    return RunWriter.create(path) if is_main() else ReplicaRunWriter(path)


@contextlib.contextmanager
def replica_output_silenced() -> Iterator[None]:
    """Sends a replica's stdout and stderr nowhere for the block: rank 0 prints for all.

    A replica that fails alone still makes torchrun end with an error naming its rank.
    """
    if is_main():
        yield
        return
    with (
        open(os.devnull, "w") as nowhere,
        contextlib.redirect_stdout(nowhere),
        contextlib.redirect_stderr(nowhere),
    ):
        yield


# ---- launching ---------------------------------------------------------------------------------


def torchrun_command(nproc: int, cli_args: Sequence[str], run_dir: str | Path) -> list[str]:
    """The command that runs ``tl_core.cli.main`` with ``cli_args`` in ``nproc`` processes on this
    machine, through torchrun (``--standalone`` picks a free port), which
    ``tl_core.training.torchrun`` runs so that a process that dies is said in words."""
    return [
        sys.executable,
        "-m",
        "tl_core.training.torchrun",
        str(run_dir),
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "tl_core.cli",
        *cli_args,
    ]


def main_process_id(run_dir: str | Path) -> int | None:
    """The process id of rank 0, read from the run folder's lock (which rank 0 claimed);
    None before it claimed the folder."""
    try:
        return int((Path(run_dir) / LOCK_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def launch(nproc: int, cli_args: Sequence[str], run_dir: str | Path) -> int:
    """Runs ``cli_args`` (a ``train`` command) in ``nproc`` processes and waits for them.

    torchrun runs in a session of its own, so a Ctrl-C in the terminal reaches only this
    launcher. A first Ctrl-C or SIGTERM is passed to rank 0 as a stop, which every rank then
    agrees on at the next batch: the run ends "stopped" and torchrun exits 0. Before rank 0
    claimed the run folder there is nothing to keep, and torchrun is ended; a second signal
    ends every process at once. ``PAUSE_SIGNAL`` and ``RESUME_SIGNAL`` are passed to rank 0.

    Returns:
        torchrun's exit code (1 when it was ended by a signal).
    """
    process = subprocess.Popen(torchrun_command(nproc, cli_args, run_dir), start_new_session=True)
    signals = (signal.SIGINT, signal.SIGTERM)
    asked = []

    def stop(*_):
        main_pid = main_process_id(run_dir)
        if asked or main_pid is None:
            print("\nEnding every training process now...", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL if asked else signal.SIGTERM)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(main_pid, signal.SIGINT)
        asked.append(True)

    def forward(*args):
        # A pause or a resume goes to rank 0 as it is; every rank then agrees on it.
        main_pid = main_process_id(run_dir)
        if main_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(main_pid, args[0])

    previous = {number: signal.signal(number, stop) for number in signals}
    previous |= {number: signal.signal(number, forward) for number in (PAUSE_SIGNAL, RESUME_SIGNAL)}
    try:
        code = process.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return code if code >= 0 else 1
