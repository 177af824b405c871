"""Start training → first point on the live loss chart, measured in a real browser.

What a user waits for after pressing Start: a real ``streamlit run app.py`` server, driven by
Debian's Chromium through Playwright, follows the README's quick start (Data page → "Load sample
dataset", the Model page's defaults, Train page → "Start training"). Each repeat starts a fresh
server with a fresh workspace, so the app's feature cache (``workspace/feature-cache``) is cold
and the backbone computes every feature again; ``TL_STUDIO_FEATURE_CACHE`` points into the same
temporary folder, so nothing is read from the user's cache either.

Times are taken in the page, from the click on Start (a capturing click listener) to:

- running shown: the Start button is disabled (the server has started the job and redrawn);
- first loss point: the live *loss* chart (the element keyed ``loss_chart``; the accuracy chart
  beside it is not counted) has drawn at least one point of the per-batch training loss;
- line visible: it has drawn two, the first segment of the line (the newest point is a dot,
  so the first point shows on its own).

The page is polled on every animation frame (``wait_for_function``), never by a timer. The live
view is an ``st.fragment(run_every=1.0)`` (app_pages/train.py: ``live_job``; the sidebar's job
line redraws every 2 s), so a loss reaches the chart at the next redraw after training produced
it. The page's script-state changes give how often the live view redrew and how long each
redraw took. To split the figure, the server runs with a small probe (unless ``--no-probe``):
``streamlit run`` started through ``streamlit.web.cli.main`` in a process that first wraps
``TrainingJob.start`` and the job observer's ``on_plan`` and ``on_batch``, to note when the job
started, when the data was checked and the backbone loaded, and when the first batch loss
arrived (the same clock as the page's: this machine's). Browser, server and training share the
machine, as they do for a user on a 2-core laptop: the page's redraws slow the training down.

The engine's own figure for the same settings, from ``train()`` to the first loss in one
process without the app, is ``bench/finetune.py --first-loss-only``.

    .venv/bin/python bench/first_point.py [--repeats 3] [--no-probe]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

from playwright import sync_api

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_FLAGS,
    STREAMLIT,
    app_server,
    go_to,
    wait_until_idle,
)

TIMEOUT_MS = 180_000
MARKS_ENV = "TL_BENCH_MARKS"

# Run as `python -c PROBE run app.py ...`: `streamlit run` itself (the `streamlit` command is
# this same `main`), with three server-side moments written to $TL_BENCH_MARKS as they happen.
# tl_core.jobs.training_job is imported by the app's first page anyway, long before the click.
PROBE = """
import json, os, sys, time
from tl_core.jobs import training_job as jobs

marks = {}

def noting(name, method):
    def noted(self, *args, **kwargs):
        if name not in marks:
            marks[name] = time.time()
            with open(os.environ["TL_BENCH_MARKS"], "w") as file:
                json.dump(marks, file)
        return method(self, *args, **kwargs)
    return noted

jobs.TrainingJob.start = noting("job started", jobs.TrainingJob.start)
jobs._StateObserver.on_plan = noting("backbone loaded", jobs._StateObserver.on_plan)
jobs._StateObserver.on_batch = noting("first loss", jobs._StateObserver.on_batch)

from streamlit.web.cli import main
sys.argv[0] = "streamlit"
main()
"""

# Notes, on the page's own clock (epoch milliseconds), the first click after it is installed.
NOTE_CLICK_JS = """() => {
    window.__bench = {};
    document.addEventListener('click', () => {
        window.__bench.click ??= performance.timeOrigin + performance.now();
    }, {capture: true});
}"""

# Called on every animation frame until the loss chart has drawn `minPoints` points; notes when
# the Start button was first disabled, when the chart first held one and two points, and each
# change of the app's script state (a redraw of the live view runs the script: "running", then
# "notRunning"). Only the shown loss chart counts: during a redraw Streamlit keeps the previous
# one hidden (display: none) beside the new. Points are counted in Plotly's _fullData (decoded
# arrays; data may hold base64-packed ones). textContent, not innerText: no layout forced on
# every frame.
TIMELINE_JS = """(minPoints) => {
    const now = performance.timeOrigin + performance.now();
    const bench = window.__bench;
    const state = document.querySelector('[data-testid="stApp"]').dataset.testScriptState;
    if (state !== bench.state) (bench.states ??= []).push([now, bench.state = state]);
    const start = [...document.querySelectorAll('button')]
        .find(button => button.textContent.includes('Start training'));
    if (start && start.disabled) bench.running ??= now;
    const chart = [...document.querySelectorAll('.st-key-loss_chart')]
        .find(element => element.checkVisibility());
    const plot = chart && chart.querySelector('.js-plotly-plot');
    const points = ((plot && plot._fullData) || [])
        .reduce((n, trace) => n + ((trace.x || trace.y || []).length || 0), 0);
    if (points >= 1) bench.point ??= now;
    if (points >= 2) bench.line ??= now;
    return points >= minPoints && bench;
}"""


@contextlib.contextmanager
def bench_server(folder: Path, probe: bool) -> Iterator[str]:
    """The app with its workspace and feature cache in ``folder`` (both empty); with the probe,
    noting the server's own moments in ``folder/marks.json``."""
    env = {
        **os.environ,
        "TL_STUDIO_WORKSPACE": str(folder / "workspace"),
        "TL_STUDIO_FEATURE_CACHE": str(folder / "feature-cache"),
        MARKS_ENV: str(folder / "marks.json"),
    }
    with app_server(env, ["-c", PROBE] if probe else STREAMLIT) as url:
        yield url


def measure_once(browser, folder: Path, probe: bool) -> dict[str, float]:
    """One quick start in a fresh server and browser context: seconds from the click on Start
    to each moment (``running``, ``point``, ``line``; with the probe also ``job started``,
    ``backbone loaded`` and ``first loss`` on the server), and the live view's redraws."""
    expect = sync_api.expect
    with bench_server(folder, probe) as url:
        context = browser.new_context(viewport={"width": 1400, "height": 1600})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
        wait_until_idle(page)

        page.get_by_role("tab", name="Sample dataset").click()
        page.get_by_role("button", name="Load sample dataset").click()
        expect(page.get_by_text("Ready to train:", exact=False)).to_be_visible()
        wait_until_idle(page)

        go_to(page, "Model")  # visiting it saves its defaults as the run's settings
        saved = page.get_by_text("Saved: the next training run uses these settings.")
        expect(saved).to_be_visible()

        go_to(page, "Train")
        start = page.get_by_role("button", name="Start training")
        expect(start).to_be_enabled()
        if page.locator(".st-key-loss_chart").count():
            raise RuntimeError("the Train page shows a loss chart before training started")
        page.evaluate(NOTE_CLICK_JS)
        start.click()
        timeline = page.wait_for_function(
            TIMELINE_JS, arg=2, polling="raf", timeout=TIMEOUT_MS
        ).json_value()

        page.get_by_role("button", name="Stop").click()  # the job ends before the server does
        expect(start).to_be_enabled()
        context.close()

    click = timeline["click"] / 1000
    moments = {name: timeline[name] / 1000 - click for name in ("running", "point", "line")}
    marks = folder / "marks.json"
    if probe:  # the server's own moments, on the same clock (this machine's)
        moments.update({name: at - click for name, at in json.loads(marks.read_text()).items()})
    # The live view's redraws: the script runs that began once the job was shown.
    redraws = [
        (began - click, ended - began)
        for began, ended in script_runs(timeline["states"])
        if began - click >= moments["running"]
    ]
    if len(redraws) >= 2:
        starts = [began for began, _ in redraws]
        moments["redraw every"] = statistics.median(b - a for a, b in pairwise(starts))
        moments["redraw takes"] = statistics.median(took for _, took in redraws)
    return moments


def script_runs(states: list[tuple[float, str]]) -> list[tuple[float, float]]:
    """(began, ended) in seconds of each script run, from the page's script state changes."""
    runs, began = [], None
    for at, state in states:
        if state == "running":
            began = at / 1000
        elif began is not None:
            runs.append((began, at / 1000))
            began = None
    return runs


def describe(run: dict[str, float]) -> str:
    """One repeat in a line: the page's moments, then the server's and the live view's."""
    text = (
        f"running shown {run['running']:.2f} s, first loss point {run['point']:.2f} s, "
        f"line visible {run['line']:.2f} s"
    )
    if "first loss" in run:
        text += (
            f"; server: job started {run['job started']:.2f} s, backbone loaded "
            f"{run['backbone loaded']:.2f} s, first loss {run['first loss']:.2f} s, drawn "
            f"{run['point'] - run['first loss']:.2f} s later"
        )
    if "redraw every" in run:
        text += (
            f"; live view redrawn every {run['redraw every']:.2f} s, "
            f"{run['redraw takes']:.2f} s per redraw"
        )
    return text


def median_line(label: str, values: list[float], digits: int = 1) -> str:
    listed = ", ".join(f"{v:.{digits}f}" for v in values)
    median = statistics.median(values)
    return f"{label}: {median:.{digits}f} s (median of {len(values)}: {listed})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--no-probe",
        action="store_true",
        help="plain `python -m streamlit run`, without the server-side moments",
    )
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit("chromium is not installed (apt-get install chromium)")

    runs: list[dict[str, float]] = []
    with sync_api.sync_playwright() as playwright:
        sync_api.expect.set_options(timeout=TIMEOUT_MS)
        for repeat in range(1, args.repeats + 1):
            # A fresh browser too: nothing a repeat left behind weighs on the next.
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            with tempfile.TemporaryDirectory(prefix="tl-first-point-") as tmp:
                runs.append(measure_once(browser, Path(tmp), probe=not args.no_probe))
            browser.close()
            print(f"repeat {repeat}: {describe(runs[-1])}", flush=True)

    def each(name: str) -> list[float]:
        return [run[name] for run in runs]

    print(median_line("Start → job shown running", each("running"), digits=2))
    if not args.no_probe:
        print(median_line("Start → first batch loss in the server", each("first loss")))
        drawn = [run["point"] - run["first loss"] for run in runs]
        print(median_line("first batch loss → drawn on the chart", drawn, digits=2))
    if all("redraw every" in run for run in runs):
        print(median_line("live view redrawn every", each("redraw every"), digits=2))
        print(median_line("one redraw takes", each("redraw takes"), digits=2))
    print(median_line("Start → two points (the first visible line)", each("line")))
    print(median_line("Start → first loss point on the chart", each("point")))


if __name__ == "__main__":
    main()
