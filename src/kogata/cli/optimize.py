"""``kogata init`` and ``kogata optimize``: the main job."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.live import Live
from rich.table import Table

from kogata.cli.common import console, err_console, log
from kogata.core.errors import KogataError


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("optimize")(optimize)


def init(
    path: Path = typer.Argument(Path("kogata.yaml"), help="Where to write the project file."),
    base: str = typer.Option("smollm2-135m", "--base", help="Model to start from (catalog name, artifact, or path)."),
    suite: str = typer.Option("support-desk-en", "--suite", help="Suite name or YAML path."),
    language: str = typer.Option("en", "--language", "-l", help="Report language: en or ja."),
    data: list[str] = typer.Option([], "--data", "-d", help="Your domain texts (files/folders); repeatable."),
    budget: float = typer.Option(15, "--budget-minutes", help="Time budget for the search."),
    limit: int = typer.Option(None, "--limit", help="Items per task while searching (default: all)."),
    price: str = typer.Option(None, "--price", help="Price profile (cloud-2vcpu-jpy, cloud-2vcpu-usd, onprem-pc-jpy)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Create a commented project file (kogata.yaml, comments in English and Japanese)."""
    from kogata.optimize.project import init_project, load_project

    if language not in ("en", "ja"):
        raise KogataError(f"--language {language!r} is not supported", "use en or ja")
    out = init_project(path, base=base, suite=suite, language=language, data=data, budget=budget, limit=limit, price=price, force=force)
    load_project(out)  # what we wrote must load
    console.print(f"[green]wrote[/] {out} — edit it, then run: kogata optimize {out}")


class _Display:
    """A live panel: current candidate and step, time used of the budget, best so far."""

    def __init__(self, budget_s: float, elapsed_s: float):
        self.budget_s, self.started, self.prior = budget_s, time.time(), elapsed_s
        self.current, self.stage, self.best, self.done, self.total = "-", "", "-", 0, 0
        self.lines: list[str] = []

    def event(self, kind: str, data: dict) -> None:
        before = len(self.lines)
        self._event(kind, data)
        if not err_console.is_terminal:  # logs and CI: one line per event instead of a live panel
            if kind == "start":
                err_console.print(f"› candidate {data['position'] + 1}/{data['total']}: {data['label']}", highlight=False)
            for line in self.lines[before:]:
                err_console.print(line, highlight=False)

    def _event(self, kind: str, data: dict) -> None:
        if kind == "start":
            self.current, self.total, self.stage = data["label"], data["total"], "starting"
        elif kind == "stage":
            self.stage = data["text"][:90]
        elif kind == "done":
            e = data["entry"]
            self.done += 1
            m = e.get("metrics") or {}
            self.lines.append(f"[green]✓[/] {data['label']}: {e['artifact']['name']} ({e['artifact']['bytes'] / 2**20:.0f} MiB)")
            if m:
                self.best = data["label"]
        elif kind == "confirmed":
            self.lines.append(f"[green]✓[/] {data['label']}: confirmed on all items")
        elif kind in ("failed", "skipped"):
            self.done += kind == "failed"
            mark = "[red]✗[/]" if kind == "failed" else "[dim]–[/]"
            self.lines.append(f"{mark} {data['label']}: {data['reason'][:120]}")

    def __rich__(self) -> Table:
        used = self.prior + time.time() - self.started
        tab = Table.grid(padding=(0, 1))
        tab.add_row("[bold]candidate[/]", f"{self.current}  [dim]{self.stage}[/]")
        tab.add_row("[bold]time[/]", f"{used / 60:.1f} / {self.budget_s / 60:.0f} min budget")
        for line in self.lines[-8:]:
            tab.add_row("", line)
        return tab


def optimize(
    project_file: Path = typer.Argument(Path("kogata.yaml"), help="The project file (see `kogata init`)."),
    out: Path = typer.Option(None, "--out", "-o", help="Report folder (default: kogata-report/ next to the project file)."),
    executor: str = typer.Option("local", "--executor", help="local (sequential, default) or ray (candidates as Ray tasks)."),
    ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster address (e.g. auto); default starts a local Ray."),
    restart: bool = typer.Option(False, "--restart", help="Forget earlier progress of this project and search again."),
) -> None:
    """Find the cheapest model that meets the suite's KPIs, and write the evidence (report.html, summary.md)."""
    from kogata.optimize.assemble import assemble
    from kogata.optimize.loop import Search, project_run_folder
    from kogata.optimize.project import load_project
    from kogata.report.publish import publish_optimize

    project = load_project(project_file)
    if executor not in ("local", "ray"):
        raise KogataError(f"--executor {executor!r} is not known", "use local or ray")
    ex = None
    if executor == "ray":
        from kogata.optimize.executor import RayExecutor

        ex = RayExecutor(address=ray_address, threads=project.threads)
    search = Search(project, executor=ex, restart=restart, log=log)
    resumed = [r for r in search.state.rows() if r.status in ("done", "skipped", "failed")]
    if resumed:
        log(f"resuming: {len(resumed)} candidate(s) already finished for this project")
    display = _Display(project.budget_minutes * 60, search.state.run().elapsed_s)
    search.on_event = display.event
    if not err_console.is_terminal:
        search.run()
    else:
        try:
            with Live(display, console=err_console, refresh_per_second=4, transient=True):
                search.run()
        finally:
            for line in display.lines:
                err_console.print(line, highlight=False)
    results = assemble(search)
    folder = publish_optimize(results, out or project_run_folder(project))
    dec = results["optimize"]["decision"] or {}
    rec = dec.get("recommended")
    if rec:
        e = next(x for x in results["entries"] if x["key"] == rec)
        console.print(f"[bold green]recommended:[/] {e['candidate']['label']} → {e['artifact']['name']} ({e['artifact']['id']})")
    else:
        console.print("[bold red]no candidate meets every KPI[/] — see the report for the closest miss and what to try next")
    console.print(f"report: {folder / 'report.html'}\nsummary: {folder / 'summary.md'}")
    if rec:  # `kogata serve --from` reads optimize.decision.recommended from results.json (kogata.serve.config)
        console.print(f"serve it: kogata serve --from {folder}   # serves {e['artifact']['name']} ({e['artifact']['id']})", highlight=False)
    else:
        console.print("nothing to serve: no candidate was recommended", highlight=False)
