"""One button for a good model: a recipe search planned from measured speeds and run within a
time budget, each decision written in words beside its evidence.

Modules (each says what it holds in its own docstring):
    budget, decisions, measure, plan, result, search, setup
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "budget": (
            "Budget",
            "parse_budget",
        ),
        "decisions": ("Decision",),
        "plan": (
            "STEP_TITLES",
            "SearchPlan",
            "duration",
        ),
        "result": (
            "AutoResult",
            "read_auto",
        ),
        "search": ("run_search",),
        "setup": (
            "SearchObserver",
            "SearchSettings",
        ),
    },
)
