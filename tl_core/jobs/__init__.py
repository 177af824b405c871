"""Background jobs: training and groups of runs in a thread, comparisons, runs followed in other
processes through their events.

Modules (each says what it holds in its own docstring):
    comparisons, events, processes, training_job
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "comparisons": (
            "Comparison",
            "ComparisonBusyError",
            "ComparisonRegistry",
            "ComparisonSnapshot",
        ),
        "events": (
            "EVENT_PREFIX",
            "EventWriter",
            "replay",
            "summary_of",
        ),
        "processes": (
            "ProcessJob",
            "failure_from",
        ),
        "training_job": (
            "JobRegistry",
            "JobSnapshot",
            "KIND_NAMES",
            "SWEEP",
            "TRAIN",
            "TRANSFER_CHECK",
            "TrainingJob",
        ),
    },
)
