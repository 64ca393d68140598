"""``kogata eval``: evaluate artifacts on a suite — quality, speed, memory, cost and the KPI verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from kogata.cli.common import console, err_console
from kogata.core.errors import KogataError
from kogata.eval.run import EvalProgress
from kogata.report import format as f

DTYPES = ("float32", "bfloat16", "int8")


class RichEvalProgress(EvalProgress):
    """Progress bars: one for the artifact × runtime entries, one per task of the current entry, a status line."""

    def __init__(self) -> None:
        self.bars = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=err_console, transient=False)
        self.overall: Any = None
        self.status: Any = None
        self.tasks: dict[str, Any] = {}

    def start(self, total: int) -> None:
        self.bars.start()
        self.overall = self.bars.add_task("[bold]models × runtimes", total=total)

    def entry(self, key: str, index: int, total: int) -> None:
        self.bars.update(self.overall, completed=index, description=f"[bold]models × runtimes[/] — {key}")
        for tid in [*self.tasks.values(), self.status]:
            if tid is not None:
                self.bars.remove_task(tid)
        self.tasks, self.status = {}, self.bars.add_task("  starting", total=None)

    def stage(self, key: str, text: str) -> None:
        if self.status is not None:
            self.bars.update(self.status, description=f"  [dim]{text[:90]}")

    def task(self, key: str, task: str, done: int, total: int) -> None:
        if task not in self.tasks:
            self.tasks[task] = self.bars.add_task(f"  {task}", total=total)
        self.bars.update(self.tasks[task], completed=done, total=total)
        self.stage(key, f"quality: {task}")

    def finish(self) -> None:
        if self.overall is not None:
            self.bars.update(self.overall, completed=self.bars.tasks[0].total)
        if self.status is not None:
            self.bars.remove_task(self.status)
            self.status = None
        self.bars.stop()


def _resolve_artifacts(refs: list[str]) -> list[Any]:
    from kogata.artifacts.catalog import CATALOG
    from kogata.artifacts.store import Store

    store = Store()
    arts = []
    for ref in refs:
        art = store.find(ref)
        if art is None:
            base = ref[: -len("-gguf")] if ref.endswith("-gguf") else ref
            if base in CATALOG:
                raise KogataError(f"{ref} is a built-in model that is not in the store yet", f"run `kogata models pull {base}` first")
            art = store.get(ref)  # raises the usual "no artifact named …"
        arts.append(art)
    return arts


def _key_quality(results: dict[str, Any]) -> list[str]:
    """Quality metrics for the terminal table: those with KPIs, else the first metric of each task."""
    tasks = {t["name"] for t in results["suite"]["tasks"]}
    kpis = results["suite"].get("kpis") or {}
    named = [m for kind in ("min", "max") for m in (kpis.get(kind) or {}) if m.split(".", 1)[0] in tasks]
    if named:
        return named[:4]
    out = []
    for t in results["suite"]["tasks"]:
        for e in results["entries"]:
            metrics = list(((e.get("quality") or {}).get(t["name"]) or {}).get("metrics") or {})
            if metrics:
                out.append(f"{t['name']}.{metrics[0]}")
                break
    return out[:4]


def print_summary(results: dict[str, Any], out: Path) -> None:
    cols = _key_quality(results)
    tab = Table(title=f"{results['suite']['name']} — threads {results['settings']['threads']}", title_justify="left")
    for c in ("artifact", "runtime", *cols, "decode tok/s", "p95 ms", "RSS MiB", "cost/month", "verdict"):
        tab.add_column(c, justify="left" if c in ("artifact", "runtime", "verdict") else "right")
    for e in results["entries"]:
        m = e.get("metrics") or {}
        cost = e.get("cost") or {}
        verdict = e.get("verdict", "PASS")
        if verdict == "PASS":
            shown = "[bold green]PASS[/]"
        elif verdict == "FAIL":
            shown = "[bold red]FAIL[/] " + ", ".join(e["kpi"]["failed"])
        else:
            shown = f"[bold yellow]ERROR[/] {e.get('error') or ''}"
        base = " [dim](baseline)[/]" if e["key"] == results.get("baseline") else ""
        tab.add_row(e["artifact"]["name"] + base, e["runtime"]["name"], *(f.score(m.get(c)) for c in cols),
                    f.num(m.get("decode_tok_s")), f.num(m.get("latency_p95_ms"), 0), f.mib(m.get("peak_rss_mb")),
                    f.money(cost.get("cost_per_month"), cost.get("currency")), shown)
    # logs and CI are not terminals: rich would squeeze the table into 80 columns
    (console if console.is_terminal else Console(width=max(console.width, 180))).print(tab)
    for s in results["settings"].get("skipped") or []:
        console.print(f"[dim]skipped {s['artifact']} on {s['runtime']}: {s['reason']}[/]")
    console.print(f"report: [bold]{out / 'report.html'}[/]  (results.json, summary.md, eval.log next to it)")


def eval_command(
    artifacts: list[str] = typer.Argument(..., help="Artifacts to evaluate: store names or ids (see `kogata models list`)."),
    suite: str = typer.Option(..., "--suite", "-s", help="A suite YAML file, or a built-in suite name (support-desk-en, support-desk-ja)."),
    runtime: str = typer.Option(None, "--runtime", "-r", help="Comma-separated runtimes, e.g. torch,llamacpp (default: every "
                                "runtime that runs the suite's tasks). Each artifact runs on the listed runtimes that run its format natively."),
    limit: int = typer.Option(None, "--limit", "-n", help="At most N items per task (quick, indicative runs)."),
    threads: int = typer.Option(None, "--threads", "-t", help="CPU threads for every runtime and the efficiency probe."),
    dtype: str = typer.Option(None, "--dtype", help="torch runtime weights: float32, bfloat16, or int8 (dynamic int8 Linear layers over float32)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for results.json, report.html and summary.md (replaced when the run succeeds)."),
    fail_on_kpi: bool = typer.Option(False, "--fail-on-kpi", help="Exit with code 1 when any entry fails a KPI."),
    flash_attn: bool = typer.Option(False, "--flash-attn", help="llamacpp-engine runtime: llama.cpp flash attention on, "
                                    "the build `kogata serve --flash-attn` serves."),
) -> None:
    """Evaluate artifacts on a suite: quality, speed, memory, cost and KPI verdict, with an HTML report."""
    import os
    import sys

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' weight-loading bars would break ours
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    from kogata.eval.run import run_eval
    from kogata.eval.suite import load_suite

    if dtype is not None and dtype not in DTYPES:
        raise KogataError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}", "e.g. --dtype int8")
    the_suite = load_suite(suite)
    if runtime:
        runtimes = [r.strip() for r in runtime.split(",") if r.strip()]
    else:
        from kogata.eval.run import default_runtimes

        runtimes = default_runtimes(the_suite)
    if dtype is not None and "torch" not in runtimes:
        raise KogataError("--dtype applies to the torch runtime, which is not selected", "add torch to --runtime or drop --dtype")
    options = {"torch": ({"dtype": "float32", "int8": True} if dtype == "int8" else {"dtype": dtype})} if dtype else {}
    if flash_attn:
        if "llamacpp-engine" not in runtimes:
            raise KogataError("--flash-attn applies to the llamacpp-engine runtime, which is not selected",
                              "add --runtime llamacpp-engine (the serving engine) or drop --flash-attn")
        options["llamacpp-engine"] = {"flash_attn": True}
    arts = _resolve_artifacts(artifacts)
    import kogata.report as report

    # the reports are written into the run's staging folder, so the results folder appears complete or not at all
    results = run_eval(arts, the_suite, runtimes, limit=limit, threads=threads, out_dir=out, runtime_options=options,
                       progress=RichEvalProgress(), write_reports=lambda res, folder: report.write_reports(res, folder))
    out = Path(out).expanduser().resolve()
    print_summary(results, out)
    verdicts = [e.get("verdict") for e in results["entries"]]
    if "ERROR" in verdicts:
        err_console.print("[bold yellow]some entries failed to run[/]: see the table above and the logs in " + str(out / "logs"))
        raise SystemExit(1)  # typer.Exit is swallowed by app(standalone_mode=False) in cli.main
    if "FAIL" in verdicts:
        console.print("[bold red]KPI FAIL[/] for " + ", ".join(e["key"] for e in results["entries"] if e.get("verdict") == "FAIL"))
        if fail_on_kpi:
            raise SystemExit(1)  # typer.Exit is swallowed by app(standalone_mode=False) in cli.main


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
