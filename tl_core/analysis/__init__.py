"""Questions about transfer: which backbone (advisor, LogME), did pretraining help (transfer
check), how deep to freeze (sweep), which labels look wrong, the health check as a whole.

Modules (each says what it holds in its own docstring):
    advisor, health_report, label_issues, logme, probe, ranking, sweep, transfer
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "advisor": ("advise",),
        "health_report": ("check_health",),
        "label_issues": (
            "LabelCheckStopped",
            "LabelIssue",
            "find_label_issues",
            "out_of_sample_probabilities",
        ),
        "logme": (
            "FeatureSpectrum",
            "logme_score",
            "maximise_evidence",
        ),
        "probe": (
            "AdvisorStopped",
            "stratified_subsample",
        ),
        "ranking": (
            "AdvisorResult",
            "CandidateScore",
            "rank_candidates",
            "recommend",
        ),
        "sweep": (
            "NOT_RUN",
            "SweepObserver",
            "SweepResult",
            "SweepRow",
            "best_row",
            "default_depths",
            "read_sweep",
            "resolve_depths",
            "split_depths",
        ),
        "transfer": (
            "PRETRAINED_RUN",
            "SCRATCH_RUN",
            "domain_signals",
            "read_transfer",
            "recipe_notes",
            "scratch_config",
            "transfer_check",
            "transfer_verdict",
        ),
    },
)
