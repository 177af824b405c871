"""Questions about transfer: which backbone (advisor, LogME), did pretraining help (transfer
check), how deep to freeze (sweep), which labels look wrong, the health check as a whole.

Modules (each says what it holds in its own docstring):
    advisor, health_report, label_issues, logme, multilabel_probe, multilabel_support, probe,
    ranking, signals, sweep, sweep_result, transfer
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "advisor": (
            "advise",
            "candidate_names",
        ),
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
        "multilabel_support": (
            "ADVISOR",
            "AUTO_SEARCH",
            "LABEL_ISSUES",
            "MULTI_LABEL_TOOLS",
            "SWEEP",
            "TRANSFER_CHECK",
            "multi_label_refusal",
            "require_single_label",
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
        "signals": ("domain_signals",),
        "sweep": (
            "SweepObserver",
            "default_depths",
            "resolve_depths",
            "split_depths",
        ),
        "sweep_result": (
            "NOT_RUN",
            "SweepResult",
            "SweepRow",
            "best_row",
            "read_sweep",
        ),
        "transfer": (
            "PRETRAINED_RUN",
            "SCRATCH_RUN",
            "read_transfer",
            "recipe_notes",
            "scratch_config",
            "transfer_check",
            "transfer_verdict",
        ),
    },
)
