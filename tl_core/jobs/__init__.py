"""Background jobs: every kind of heavy work as one kind of job, run one at a time by one
scheduler with a queue; runs followed in other processes through their events.

Modules (each says what it holds in its own docstring):
    analysis_jobs, auto_job, events, job, processes, scheduler, snapshot, training_job
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "analysis_jobs": (
            "AnalysisJob",
            "comparison_job",
            "label_search_job",
            "lr_find_job",
        ),
        "auto_job": ("AutoJob",),
        "events": (
            "EVENT_PREFIX",
            "EventWriter",
            "replay",
            "summary_of",
        ),
        "job": ("Job",),
        "processes": (
            "ProcessJob",
            "failure_from",
        ),
        "scheduler": (
            "InterruptedJob",
            "JobScheduler",
            "QUEUE_FILE",
            "ordinal",
        ),
        "snapshot": (
            "AUTO",
            "COMPARISON",
            "JobSnapshot",
            "KIND_NAMES",
            "LABEL_SEARCH",
            "LR_FIND",
            "SWEEP",
            "TRAIN",
            "TRAINING_KINDS",
            "TRANSFER_CHECK",
        ),
        "training_job": ("TrainingJob",),
    },
)
