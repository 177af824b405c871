"""A training process that dies under torchrun, said in words.

When one of the processes that train together dies (killed, or out of memory), the others learn
it at their next exchange, as a transport error of the backend: gloo's "Read error ...
Connection reset by peer", NCCL's "remote process exited". Those errors name sockets, not
processes. :func:`lost_process_error` turns such an error into a sentence on the processes that
survive (rank 0 reports it), and :func:`process_stopped` gives the launcher
(``tl_core.training.torchrun``) the same sentence when rank 0 itself died and nothing reported.
"""

from __future__ import annotations

from tl_core.common import TLStudioError
from tl_core.training import distributed

# What the backends' errors say when the process at the other end of a connection is gone
# (gloo over TCP; NCCL). Compared in lower case.
LOST_PEER_SIGNS = (
    "connection reset by peer",
    "connection closed by peer",
    "broken pipe",
    "remote process exited",
    "communicator was aborted",
)
LIKELY_CAUSE = "killed, or out of memory"
LOST_PROCESS_HINT = (
    "The run folder keeps the best weights saved so far. If memory ran out, train with fewer "
    "processes (--nproc), a smaller --batch-size or fewer --workers; then train again."
)


def process_stopped(which: str, epochs_done: int | None, cause: str = LIKELY_CAUSE) -> str:
    """The sentence for a process that died: "Process 2 of 2 stopped unexpectedly (killed,
    or out of memory); the run was stopped after epoch 3."

    Args:
        which: The process, as the sentence starts ("Process 2 of 2").
        epochs_done: Epochs the run finished before it stopped (None: not known).
        cause: What probably ended it, in parentheses.
    """
    if epochs_done is None:
        when = ""
    elif epochs_done:
        when = f" after epoch {epochs_done}"
    else:
        when = " before its first epoch ended"
    return f"{which} stopped unexpectedly ({cause}); the run was stopped{when}."


def is_lost_peer(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error that caused it) is a backend's word for a lost process."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc).lower()
        if isinstance(exc, RuntimeError) and any(sign in text for sign in LOST_PEER_SIGNS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def lost_process_error(exc: BaseException, epochs_done: int) -> TLStudioError | None:
    """The error in words when ``exc`` says that another training process is gone; None when
    this process trains alone or ``exc`` says something else.

    Args:
        exc: What the training raised.
        epochs_done: Epochs the run finished.
    """
    world = distributed.world_size()
    if world < 2 or not is_lost_peer(exc):
        return None
    if world == 2:  # the other one: rank 0's partner is process 2, rank 1's is process 1
        which = f"Process {2 - distributed.rank()} of 2"
    else:
        which = f"Another of the {world} training processes"
    return TLStudioError(process_stopped(which, epochs_done), LOST_PROCESS_HINT)
