"""The automatic recipe search: measure, plan, then run each step within the time budget.

One call, :func:`run_search`, does what an expert would do by hand with the app's tools, in
this order, and writes ``DIR/auto.json`` after every step (``tl_core.auto.result``):

1. measure this computer's speed with every candidate backbone (``tl_core.auto.measure``) and
   fit the plan to the budget (``tl_core.auto.plan``);
2. rank the backbones with the advisor and keep those within chance of the best;
3. train short runs at a few freeze depths (the sweep's depths and settings) and keep the best;
4. lr-find for the head's rate at that depth;
5. for small data, one more short run with augmentation switched, and keep the better;
6. the final run of the winning recipe, as long as the budget allows, with early stopping;
7. when time is left, the transfer check: the same recipe from random weights.

Every run is an ordinary run folder directly in ``DIR``, so ``DIR`` is one group on Compare
and the final run works with Evaluate, Predict and Export. Training goes through the one
trainer (``tl_core.training.train``); the budget is kept by each step's ``StepControl``
(``tl_core.auto.budget``). A stop keeps the best run so far and lists what was not tried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from tl_core.analysis import (
    AUTO_SEARCH,
    AdvisorStopped,
    advise,
    candidate_names,
    require_single_label,
    scratch_config,
    transfer_verdict,
)
from tl_core.auto.budget import Budget, DeadlineObserver, StepControl
from tl_core.auto.decisions import (
    Decision,
    Measured,
    best_of,
    choose_augment,
    choose_backbones,
    choose_freeze,
    choose_lr,
)
from tl_core.auto.measure import MEASURE_SHARE, data_shape, measure_all
from tl_core.auto.plan import (
    AUGMENT,
    BACKBONES,
    FINAL,
    FREEZE,
    LR,
    LR_FIND_BATCHES,
    MAX_FINAL_EPOCHS,
    PROBE_EPOCHS,
    STEP_TITLES,
    TRANSFER,
    DataShape,
    SearchPlan,
    Throughput,
    duration,
    epochs_that_fit,
    final_epoch_seconds,
    plan_search,
    spread_depths,
    sweep_seconds,
)
from tl_core.auto.result import AutoResult, BestRun
from tl_core.auto.setup import (
    FINAL_RUN,
    SCRATCH_RUN,
    Recipe,
    SearchObserver,
    SearchSettings,
    augment_of,
)
from tl_core.common import JobControl
from tl_core.config import TrainConfig
from tl_core.models import create_model
from tl_core.runs import METRICS_FILE, RunWriter, read_json, summarize_run
from tl_core.training import LRFinderStopped, find_learning_rate, train


class _Search:
    def __init__(
        self,
        settings: SearchSettings,
        out_dir: Path,
        observer: SearchObserver,
        control: JobControl,
    ):
        self.settings = settings
        self.base = settings.base or TrainConfig(data=str(settings.data))
        self.base = self.base.replace(data=str(settings.data))
        self.observer = observer
        self.control = control
        self.budget = Budget(settings.budget_seconds, settings.clock)
        self.group = RunWriter.create(out_dir)  # new or empty, locked while the search writes
        self.result = AutoResult(self.group.path, settings.budget_seconds)
        self.tried: dict[str, tuple[TrainConfig, Measured]] = {}
        self.plan: SearchPlan | None = None

    # ---- helpers -------------------------------------------------------------------------------

    def _save(self) -> None:
        self.result.seconds = self.budget.used()
        self.result.write()

    def _decide(self, decision: Decision) -> None:
        self.result.decisions.append(decision)
        self._save()
        self.observer.on_decision(decision, self.result)

    def _not_tried(self, sentence: str) -> None:
        self.result.not_tried.append(sentence)

    def _speed(self, backbone: str) -> Throughput:
        return next(s for s in self.plan.speeds if s.backbone == backbone)

    def _control(self, limit: float, hard_limit: float, first_epoch_runs=False) -> StepControl:
        return StepControl(self.control, self.budget, limit, hard_limit, first_epoch_runs)

    def _train(self, config: TrainConfig, name: str, label: str, control: StepControl) -> Measured:
        """One run into ``DIR/name`` through the trainer, within ``control``'s limits."""
        writer = RunWriter.create(self.group.path / name)
        self.observer.on_run(label, writer.path)
        started = self.budget.used()
        status = train(
            config,
            writer,
            DeadlineObserver(self.observer, control),
            control,
            feature_cache=self.settings.feature_cache,
        )
        self.observer.on_run_done(label, writer.path, status)
        summary = summarize_run(writer.path)
        measured = Measured(
            label,
            str(config.freeze) if label.startswith("freeze") else config.augment,
            summary.best_val_accuracy,
            summary.num_val_images or 0,
            writer.path.name,
            self.budget.used() - started,
        )
        self.tried[name] = (config, measured)
        return measured

    def _epoch_seconds(self, name: str) -> float:
        """The mean epoch of a run already trained, as its metrics.json measured it."""
        history = read_json(self.group.path / name / METRICS_FILE).get("history") or []
        seconds = [float(row.get("seconds") or 0.0) for row in history]
        return sum(seconds) / len(seconds) if seconds else 0.0

    # ---- the steps -----------------------------------------------------------------------------

    def measure(self) -> DataShape:
        shape = data_shape(self.settings.data, self.base)
        names = list(self.settings.backbones or candidate_names(None)[0])
        # Measuring may take a share of the budget, no more: the rest is for the search.
        speeds = measure_all(
            names,
            self.base,
            lambda: self.budget.used() < MEASURE_SHARE * self.budget.seconds,
        )
        if left_out := [n for n in names if n not in {s.backbone for s in speeds}]:
            self._not_tried(
                f"Measuring {', '.join(left_out)}: measuring took "
                f"{duration(self.budget.used())} of the budget already."
            )
        self.plan = plan_search(self.budget.seconds, self.budget.used(), speeds, shape)
        self.result.plan = self.plan
        for step in self.plan.skipped:
            self._not_tried(f"{step.title}: {step.skipped}")
        self._save()
        self.observer.on_search_plan(self.plan, self.budget)
        return shape

    @property
    def search_limit(self) -> float:
        """Used seconds by which the searching steps end: the final run's share stays free."""
        return self.budget.seconds - self.plan.step(FINAL).seconds

    def _fits(self, what: str, seconds: float) -> bool:
        """Whether ``seconds`` more fit before the search limit; says so when not."""
        left = self.search_limit - self.budget.used()
        if seconds <= left:
            return True
        self._not_tried(
            f"{what}: it needed about {duration(seconds)} and {duration(max(0, left))} of the "
            "searching time was left."
        )
        return False

    def _search_control(self) -> StepControl:
        # A searching run may overrun its share by half the final run's before it is cut.
        return self._control(
            self.search_limit, self.search_limit + self.plan.step(FINAL).seconds / 2
        )

    def _advisor_factory(self) -> Callable | None:
        """Without pretraining, the advisor measures the random-weight models that will train."""
        if self.base.pretrained:
            return None
        return lambda name, classes: create_model(name, classes, pretrained=False)

    def rank_backbones(self) -> list[str]:
        names = [s.backbone for s in self.plan.speeds]
        control = self._search_control()
        try:
            ranked = advise(
                self.settings.data,
                names,
                stop=control,
                progress=self.observer.on_analysis,
                cache_dir=self.settings.feature_cache,
                image_size=self.base.image_size,
                device=self.base.device,
                seed=self.base.seed,
                model_factory=self.settings.model_factory or self._advisor_factory(),
            )
        except AdvisorStopped:
            if not control.out_of_time:
                raise
            self._not_tried("Ranking the backbones: the searching time ran out during it.")
            return names[:1]
        kept, decision = choose_backbones(ranked.candidates)
        self._decide(decision)
        return kept or names[:1]

    def sweep(self, backbones: Sequence[str], data: DataShape) -> Recipe:
        results: list[Measured] = []
        of_run: dict[str, str] = {}
        for index, backbone in enumerate(backbones):
            speed = self._speed(backbone)
            depths = spread_depths(speed.groups, len(self.plan.depths))
            if index > 0 and not self._fits(
                f"Freeze depths of {backbone}", sweep_seconds(speed, data, depths)
            ):
                continue
            for depth in depths:
                if self.control.stop_requested:
                    break
                label = f"freeze {depth}" if len(backbones) == 1 else f"freeze {depth} ({backbone})"
                if not self._fits(label.capitalize(), sweep_seconds(speed, data, [depth])):
                    continue
                config = self.base.replace(
                    backbone=backbone,
                    mode="fine-tune",
                    freeze=depth,
                    epochs=PROBE_EPOCHS,
                    augment=augment_of(depth),
                    early_stopping_patience=0,
                )
                name = f"{backbone}-freeze-{depth}"
                measured = self._train(config, name, label, self._search_control())
                results.append(measured)
                of_run[measured.run] = backbone
        # Each backbone's best depth; across backbones a tie goes to the faster (listed first).
        leaders = [best_of([r for r in results if of_run[r.run] == b]) for b in backbones]
        leaders = [leader for leader in leaders if leader is not None]
        leader = max(leaders, key=lambda r: r.accuracy) if leaders else None
        best, decision = choose_freeze(
            results, of_run[leader.run] if leader is not None else backbones[0], leader
        )
        self._decide(decision)
        if best is None:
            return Recipe(backbones[0], "all", self.base.lr, "none")
        return Recipe(
            of_run[best.run],
            best.value,
            self.base.lr,
            augment_of(best.value),
            self._epoch_seconds(best.run),
        )

    def find_lr(self, recipe: Recipe) -> None:
        config = self._config(recipe, PROBE_EPOCHS)
        control = self._search_control()
        try:
            found = find_learning_rate(
                config,
                num_it=LR_FIND_BATCHES,
                progress=lambda done, total: self.observer.on_analysis(done, total, "lr-find"),
                stop=control,
            )
        except LRFinderStopped:
            if not control.out_of_time:
                raise
            self._not_tried("Finding the learning rate: the searching time ran out during it.")
            return
        recipe.lr, decision = choose_lr(
            found.suggestion, self.base.lr, found.diverged, len(found.lrs)
        )
        self._decide(decision)

    def try_augment(self, recipe: Recipe) -> None:
        base_name = f"{recipe.backbone}-freeze-{recipe.freeze}"
        if base_name not in self.tried:
            self._not_tried(
                f"{STEP_TITLES[AUGMENT]}: no short run at freeze {recipe.freeze} to compare with."
            )
            return
        base_config, base_run = self.tried[base_name]
        base_run = replace(
            base_run, label=f"augmentation {base_config.augment}", value=base_config.augment
        )
        other = "light" if base_config.augment == "none" else "none"
        config = base_config.replace(augment=other)
        measured = self._train(
            config,
            f"{base_name}-augment-{other}",
            f"augmentation {other}",
            self._search_control(),
        )
        if other == "none":
            without, with_augment = measured, base_run
        else:
            without, with_augment = base_run, measured
        recipe.augment, decision = choose_augment(without, with_augment)
        if recipe.augment != base_config.augment:
            recipe.epoch_seconds = self._epoch_seconds(measured.run)
        self._decide(decision)

    def _config(self, recipe: Recipe, epochs: int) -> TrainConfig:
        return self.base.replace(
            backbone=recipe.backbone,
            mode="fine-tune",
            freeze=recipe.freeze,
            lr=recipe.lr,
            augment=recipe.augment,
            epochs=epochs,
        )

    def final(self, recipe: Recipe, data: DataShape) -> Measured:
        speed = self._speed(recipe.backbone)
        epoch = recipe.epoch_seconds or final_epoch_seconds(speed, data, recipe.freeze)
        overhead = 0.0
        if recipe.freeze == "all" and recipe.augment == "none":
            overhead = speed.feature_seconds(data.images)  # unless the sweep cached them
        epochs = epochs_that_fit(self.budget.left() - overhead, epoch, MAX_FINAL_EPOCHS)
        config = self._config(recipe, epochs).replace(
            early_stopping_patience=max(self.base.early_stopping_patience, 3)
        )
        # No epoch starts that would end past the budget; the first always runs.
        control = self._control(self.budget.seconds, self.budget.seconds + epoch, True)
        measured = self._train(config, FINAL_RUN, "final run", control)
        recipe.epoch_seconds = self._epoch_seconds(FINAL_RUN) or epoch
        evidence = [measured.text, f"{epochs} epochs planned, early stopping after 3 without gain"]
        self._decide(
            Decision(
                FINAL,
                f"Final run: {recipe.backbone}, freeze {recipe.freeze}, learning rate "
                f"{recipe.lr:.0e}, augmentation {recipe.augment}: {measured.short}.",
                tuple(evidence),
                (measured.run,),
            )
        )
        return measured

    def transfer_check(self, recipe: Recipe, final: Measured, data: DataShape) -> None:
        config, _ = self.tried[FINAL_RUN]
        epochs = len(read_json(self.group.path / FINAL_RUN / METRICS_FILE).get("history") or [])
        config = scratch_config(config.replace(epochs=max(1, epochs)))
        speed = self._speed(recipe.backbone)
        epoch = speed.epoch_seconds(1.0, data.train_images, data.val_images)
        if epoch * config.epochs > self.budget.left():
            self._not_tried(
                f"{STEP_TITLES[TRANSFER]}: it needed about {duration(epoch * config.epochs)} "
                f"and {duration(max(0, self.budget.left()))} of the budget was left."
            )
            return
        control = self._control(self.budget.seconds, self.budget.seconds + epoch)
        scratch = self._train(config, SCRATCH_RUN, "from random weights", control)
        if final.accuracy is None or scratch.accuracy is None:
            self._not_tried(f"{STEP_TITLES[TRANSFER]}: a run ended before its first epoch.")
            return
        verdict = transfer_verdict(final.accuracy, scratch.accuracy, final.val_images)
        self._decide(
            Decision(TRANSFER, verdict.sentence, (final.text, scratch.text), (scratch.run,))
        )

    # ---- the whole search ----------------------------------------------------------------------

    def pick_best(self) -> None:
        """The final run when it measured an accuracy, else the best run so far."""
        final = self.tried.get(FINAL_RUN)
        if final is not None and final[1].accuracy is not None:
            config, measured = final
        else:
            scored = [  # never the transfer check's run from random weights
                entry
                for name, entry in self.tried.items()
                if entry[1].accuracy is not None and name != SCRATCH_RUN
            ]
            if not scored:
                return
            config, measured = max(scored, key=lambda entry: entry[1].accuracy)
        self.result.best = BestRun.of(config, measured)

    def run(self) -> AutoResult:
        try:
            data = self.measure()
            steps = [s.step for s in self.plan.steps if s.runs]
            # The app's default recipe until the steps find a better one.
            recipe = Recipe(self.plan.speeds[0].backbone, "all", self.base.lr, "none")
            for index, step in enumerate(steps, start=1):
                if self.control.stop_requested:
                    self._not_tried(f"{STEP_TITLES[step]}: the search was stopped before it.")
                    continue
                self.observer.on_step(index, len(steps), step)
                if step == BACKBONES:
                    backbones = self.rank_backbones()
                elif step == FREEZE:
                    recipe = self.sweep(
                        backbones if BACKBONES in steps else [self.plan.speeds[0].backbone],
                        data,
                    )
                elif step == LR:
                    self.find_lr(recipe)
                elif step == AUGMENT:
                    self.try_augment(recipe)
                elif step == FINAL:
                    final = self.final(recipe, data)
                elif step == TRANSFER and final.accuracy is not None and self.base.pretrained:
                    self.transfer_check(recipe, final, data)
            self.result.status = "stopped" if self.control.stop_requested else "completed"
            return self.result
        except BaseException:
            self.result.status = "failed"
            raise
        finally:
            self.pick_best()
            self._save()
            self.group.close()


def run_search(
    settings: SearchSettings,
    out_dir: str | Path,
    observer: SearchObserver | None = None,
    control: JobControl | None = None,
) -> AutoResult:
    """Runs the whole search into the new (missing or empty) folder ``out_dir``.

    Args:
        settings: The data, the budget and the fixed settings.
        out_dir: The search folder: its runs and auto.json.
        observer: Receives the plan, the steps, the decisions and every run's events.
        control: Pause, resume and stop for the whole search. A stop ends the run under way,
            skips the steps left and hands over the best run so far.

    Returns:
        What auto.json holds at the end.

    Raises:
        RunError: ``out_dir`` holds files, or another process writes to it.
        TLStudioError: The data cannot be used (a multi-label dataset among them), or no
            backbone can be built.
    """
    require_single_label(AUTO_SEARCH, settings.data)
    return _Search(
        settings, Path(out_dir), observer or SearchObserver(), control or JobControl()
    ).run()
