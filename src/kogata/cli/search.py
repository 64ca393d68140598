"""``kogata index build|update|list``, ``kogata search`` and ``kogata ask``: document search over your own files
(see docs/search.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from kogata.cli.common import console, err_console, human_bytes, log
from kogata.core.errors import KogataError

index_app = typer.Typer(help="Build and update document search indexes (BM25 + embeddings) in the store.", no_args_is_help=True)
_STAGES = {"read": "reading documents", "embed": "embedding chunks"}


def register(root: typer.Typer) -> None:
    root.add_typer(index_app, name="index")
    root.command("search")(search_cmd)
    root.command("ask")(ask_cmd)


class _Bars:
    """One rich progress bar per stage (reading files, embedding chunks)."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(_STAGES.get(stage, stage), total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def _progress() -> Progress:
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=err_console, transient=True)


def _store():
    from kogata.artifacts.store import Store

    return Store()


def _print_report(rep: Any, what: str) -> None:
    if rep.skipped:
        err_console.print(f"[yellow]warning:[/] skipped {len(rep.skipped)} file(s): "
                          + "; ".join(f"{s} ({w})" for s, w in rep.skipped[:5]), highlight=False)  # fmt: skip
    if rep.pii:
        log("PII replaced: " + ", ".join(f"{k} {v}" for k, v in sorted(rep.pii.items())))
    if rep.up_to_date:
        console.print(f"index {rep.name} is up to date (v{rep.version}, {rep.documents} documents, {rep.chunks} chunks)", highlight=False)
        return
    delta = ""
    if what == "updated":
        delta = (f" — {len(rep.added)} added, {len(rep.changed)} changed, {len(rep.removed)} removed, "
                 f"{rep.unchanged} unchanged")  # fmt: skip
    rate = f", {rep.embedded / rep.seconds:.1f} chunks/s" if rep.embedded and rep.seconds > 0 else ""
    console.print(f"{what} index [bold]{rep.name}[/] v{rep.version} ({rep.artifact.id}): {rep.documents} documents, {rep.chunks} chunks, "
                  f"{rep.embedded} embedded now{rate}, {rep.seconds:.1f} s{delta}", highlight=False)  # fmt: skip


@index_app.command("build")
def build_cmd(
    docs: list[Path] = typer.Argument(..., metavar="DOCS...", help="Folders or files of documents: txt, md, jsonl, csv, json, html, pdf."),
    name: str = typer.Option(..., "--name", "-n", help="Index name (letters, digits, . _ -); building it again makes a new version."),
    chunk_size: int = typer.Option(400, "--chunk-size", help="Chunk size in characters (split at 。！？ . ! ? and line ends)."),
    overlap: int = typer.Option(80, "--overlap", help="Characters of whole sentences shared by consecutive chunks."),
    embedder: str = typer.Option(None, "--embedder", help="Embedder artifact (default multilingual-e5-small, pulled once); 'none': BM25 only."),
    tokenizer: str = typer.Option("sudachi", "--tokenizer", help="BM25 tokenizer: sudachi (SudachiPy mode C) or bigram (no dictionary)."),
    scrub_pii: bool = typer.Option(False, "--scrub-pii", help="Replace e-mail, phone, card numbers … with placeholders before indexing."),
    max_file_mb: float = typer.Option(50.0, "--max-file-mb", help="Refuse a single document file larger than this."),
    skip_unreadable: bool = typer.Option(False, "--skip-unreadable", help="Skip encrypted/damaged PDFs and binary files with a warning."),
    backend: str = typer.Option("embedded", "--backend", envvar="KOGATA_SEARCH_BACKEND",
                                help="Where the chunks live: embedded (files in the store) or postgresql://user@host:port/db "
                                     "(pgvector; the index records the URL without its password)."),  # fmt: skip
) -> None:
    """Read DOCS, chunk, embed and publish the index NAME in the store (the previous version stays usable until done)."""
    from kogata.search.chunk import ChunkerSettings
    from kogata.search.index import build_index

    chunker = ChunkerSettings(chunk_size, overlap)
    store = _store()
    with _progress() as progress:
        rep = build_index(store, list(docs), name, chunker=chunker, embedder=embedder, tokenizer=tokenizer, scrub_pii=scrub_pii,
                          max_file_mb=max_file_mb, skip_unreadable=skip_unreadable, progress=_Bars(progress), log=log,
                          backend=backend)  # fmt: skip
    _print_report(rep, "built")


@index_app.command("update")
def update_cmd(
    name: str = typer.Argument(..., help="The index to update."),
    docs: list[Path] = typer.Argument(None, metavar="[DOCS...]", help="The documents now (default: the folders it was built from)."),
    embedder: str = typer.Option(None, "--embedder", help="Check that the index uses this embedder (an update never changes it)."),
    max_file_mb: float = typer.Option(50.0, "--max-file-mb", help="Refuse a single document file larger than this."),
    skip_unreadable: bool = typer.Option(False, "--skip-unreadable", help="Skip encrypted/damaged PDFs and binary files with a warning."),
) -> None:
    """Re-read the documents; embed only new or changed chunks (by content hash); drop removed documents."""
    from kogata.search.index import update_index

    store = _store()
    with _progress() as progress:
        rep = update_index(store, name, list(docs) if docs else None, embedder=embedder, max_file_mb=max_file_mb,
                           skip_unreadable=skip_unreadable, progress=_Bars(progress), log=log)  # fmt: skip
    _print_report(rep, "updated")


@index_app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """The indexes in the store (newest version of each)."""
    from kogata.search.index import list_indexes

    rows = list_indexes(_store())
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    if not rows:
        console.print("no search indexes yet — build one: kogata index build DOCS --name NAME")
        return
    table = Table("name", "version", "documents", "chunks", "embedder", "tokenizer", "chunk size / overlap", "size", "artifact")
    for r in rows:
        table.add_row(r["name"], f"v{r['version']}", str(r["documents"]), str(r["chunks"]), r["embedder"] or "none (BM25)", r["tokenizer"],
                      f"{r['chunker']['size']} / {r['chunker']['overlap']}", human_bytes(r["bytes"]), r["artifact"])  # fmt: skip
    console.print(table)


def _read_queries(path: Path, keep: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    if not path.is_file():
        raise KogataError(f"--queries file {path} does not exist", 'give a JSONL file with one {"id", "query"} object per line')
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise KogataError(f"{path} is not UTF-8 text", "save the queries file as UTF-8") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KogataError(f"{path}:{number} is not valid JSON ({exc.msg})", 'each line must be {"id": ..., "query": ...}') from None
        if not isinstance(obj, dict) or not isinstance(obj.get("query"), str) or not obj["query"].strip():
            raise KogataError(f"{path}:{number} has no \"query\" string", 'each line must be {"id": ..., "query": ...}')
        out.append({"id": obj.get("id", number), "query": obj["query"], **{k: obj[k] for k in keep if k in obj}})
    if not out:
        raise KogataError(f"{path} holds no queries", 'add lines like {"id": "q1", "query": "返品の期限は？"}')
    return out


def search_cmd(
    name: str = typer.Argument(..., help="The index to search (see `kogata index list`)."),
    query: str = typer.Argument(None, help="The query (or --queries FILE for a batch)."),
    k: int = typer.Option(5, "-k", help="How many chunks to return."),
    mode: str = typer.Option(None, "--mode", help="hybrid (default with an embedder), bm25 or dense."),
    keyword_weight: float = typer.Option(None, "--keyword-weight", help="Hybrid: weight of the BM25 score (default 0.2)."),
    embedder: str = typer.Option(None, "--embedder", help="Refuse to search unless the index was built with this embedder."),
    queries: Path = typer.Option(None, "--queries", help='Batch: JSONL with {"id", "query"} per line.'),
    out: Path = typer.Option(None, "--out", help="Batch: write one JSON line per query here (default: stdout)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Rank the chunks of index NAME for a query: source, score and text of each."""
    from kogata.core.io import atomic_text_file
    from kogata.search.index import SearchIndex

    if (query is None) == (queries is None):
        raise KogataError("give a query or --queries FILE (not both)", 'kogata search NAME "返品の期限は？" or --queries q.jsonl --out ranked.jsonl')
    if out is not None and queries is None:
        raise KogataError("--out is for batch mode", "add --queries FILE, or leave out --out")
    batch = _read_queries(queries) if queries is not None else None
    index = SearchIndex.open(_store(), name, embedder=embedder)
    try:
        retriever = index.retriever(keyword_weight=keyword_weight, need_dense=(mode or "hybrid") != "bm25")
        if batch is None:
            hits = retriever.search(query, k, mode)
            if as_json:
                typer.echo(json.dumps({"query": query, "results": [h.to_dict() for h in hits]}, ensure_ascii=False, indent=1))
                return
            if not hits:
                console.print("no matching chunks")
            for h in hits:
                sim = f" cos {h.similarity:.3f}" if h.similarity is not None else ""
                bm = f" bm25 {h.bm25:.2f}" if h.bm25 is not None else ""
                console.print(f"[bold]{h.rank}.[/] {h.chunk.source} [dim]({h.chunk.chunk_id}) score {h.score:.3f}{bm}{sim}[/]", highlight=False)
                console.print("   " + h.chunk.text.replace("\n", "\n   ")[:600], highlight=False, markup=False)
            return
        lines = []
        with _progress() as progress:
            task = progress.add_task("searching", total=len(batch))
            for lo in range(0, len(batch), 32):
                part = batch[lo : lo + 32]
                for q, hits in zip(part, retriever.search_many([x["query"] for x in part], k, mode)):
                    results = [{"source": h.chunk.source, "chunk_id": h.chunk.chunk_id, "score": round(h.score, 6), "text": h.chunk.text}
                               for h in hits]  # fmt: skip
                    lines.append(json.dumps({"id": q["id"], "results": results}, ensure_ascii=False))
                progress.update(task, completed=lo + len(part))
        if out is None:
            typer.echo("\n".join(lines))
        else:
            with atomic_text_file(out) as fh:
                fh.write("\n".join(lines) + "\n")
            console.print(f"wrote {out} ({len(lines)} queries, top {k} each)", highlight=False)
    finally:
        index.close()


@index_app.command("training-data")
def training_data_cmd(
    name: str = typer.Argument(..., help="Index to retrieve from (as the answers will be: same passages, same prompt)."),
    queries: Path = typer.Option(..., "--queries", help='JSONL: {"id", "query", "answer"} per line; no or empty answer = not in the documents.'),
    out: Path = typer.Option(..., "--out", help="Write the prompt/completion JSONL here (for the lora method with plain_prompt=true)."),
    k: int = typer.Option(3, "-k", help="Passages per prompt (as `kogata ask -k` / rag_qa's k)."),
    mode: str = typer.Option(None, "--mode", help="Retrieval: hybrid (default), bm25 or dense."),
    language: str = typer.Option("auto", "--language", help="Prompt and refusal language: auto (from each question), ja or en."),
) -> None:
    """Grounded-answer training data: each question with the passages index NAME returns, and "answer [n]" as the
    target (or "not in the documents" when no passage holds the answer). Train with
    `kogata compress BASE --method lora --data OUT --set plain_prompt=true` (docs/search.md)."""
    from kogata.search.index import SearchIndex
    from kogata.search.train_data import grounded_examples, write_jsonl

    records = _read_queries(queries, keep=("answer",))
    index = SearchIndex.open(_store(), name)
    try:
        retriever = index.retriever(need_dense=(mode or "hybrid") != "bm25")
        rows, stats = grounded_examples(retriever, records, k=k, mode=mode, language=language)
    finally:
        index.close()
    write_jsonl(rows, out)
    s = stats.to_dict()
    console.print(f"wrote {out}: {s['examples']} examples — {s['cited']} answered with [n], {s['not_retrieved']} whose answer no "
                  f"retrieved passage holds and {s['no_answer']} without an answer (both trained as 'not in the documents')",
                  highlight=False)  # fmt: skip


def _lm_runtime(store: Any, model: str, runtime: str | None) -> Any:
    from kogata.runtimes import open_runtime

    art = store.get(model)
    if art.kind not in ("causal-lm", "lm"):
        raise KogataError(f"{model} is not a language model (it is an artifact of kind {art.kind})", "pass a model artifact with --model (see `kogata models list`)")
    return open_runtime(runtime or ("llamacpp" if art.format == "gguf" else "torch"), art)


def ask_cmd(
    name: str = typer.Argument(..., help="The index to answer from."),
    question: str = typer.Argument(..., help="The question (Japanese or English)."),
    model: str = typer.Option(..., "--model", "-m", help="The language model artifact that writes the answer."),
    runtime: str = typer.Option(None, "--runtime", help="Runtime for the model (default: llamacpp for GGUF, torch for HF)."),
    k: int = typer.Option(4, "-k", help="How many passages the model reads."),
    mode: str = typer.Option(None, "--mode", help="Retrieval: hybrid (default), bm25 or dense."),
    min_similarity: float = typer.Option(None, "--min-similarity",
                                         help="Best cosine below which the answer is 'not in the documents' "
                                              "(default: the index's, 0.20 for centred cosines, 0.80 for older indexes)."),  # fmt: skip
    max_tokens: int = typer.Option(200, "--max-tokens", help="Longest answer in tokens."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer, its citations and passages as JSON."),
) -> None:
    """Answer QUESTION from the documents of index NAME, citing passages as [1], [2] (never from the model's memory)."""
    from kogata.guard.checks.grounding import GroundingCheck
    from kogata.guard.verdict import GuardContext
    from kogata.search.answer import answer_question, citations_of
    from kogata.search.closed_book import has_chat_template
    from kogata.search.index import SearchIndex
    from kogata.search.space import default_min_similarity

    store = _store()
    index = SearchIndex.open(store, name)
    try:
        hits = index.retriever(need_dense=(mode or "hybrid") != "bm25").search(question, k, mode)
        bar = default_min_similarity(index.space) if min_similarity is None else min_similarity
    finally:
        index.close()
    lm = _lm_runtime(store, model, runtime)
    try:
        ans = answer_question(lm, question, hits, max_tokens=max_tokens, use_chat=has_chat_template(lm),  # base models: plain prompt
                              min_similarity=bar)  # fmt: skip
    finally:
        lm.close()
    grounding = None
    supported_by: list[dict] = []  # without [n] from the model: the passages that alone support the answer
    if ans.status == "answered":
        cited = [p["text"] for p in ans.passages if any(c["n"] == p["n"] for c in ans.citations)] or [p["text"] for p in ans.passages]
        res = GroundingCheck().evaluate(ans.text, GuardContext(question=question, passages=cited), "flag")
        grounding = {"grounded": not res.fired, "support": res.score}
        if not ans.citations:
            alone = [p["n"] for p in ans.passages
                     if not GroundingCheck().evaluate(ans.text, GuardContext(question=question, passages=[p["text"]]), "flag").fired]
            supported_by = citations_of(hits, alone)
        grounding["supported_by"] = supported_by
    if as_json:
        typer.echo(json.dumps({**ans.to_dict(), "grounding": grounding}, ensure_ascii=False, indent=1))
        return
    console.print(ans.text, highlight=False, markup=False)
    for c in ans.citations:
        console.print(f"  [{c['n']}] {c['source']} — {c['title']} [dim]({c['chunk_id']})[/]", highlight=False)
    if ans.invalid_citations:
        err_console.print(f"[yellow]note:[/] removed citations to passages that were not retrieved: {ans.invalid_citations}", highlight=False)
    if ans.status == "answered" and not ans.citations:
        for c in supported_by:
            console.print(f"  supported by [{c['n']}] {c['source']} — {c['title']} [dim]({c['chunk_id']})[/]", highlight=False)
        err_console.print("[yellow]warning:[/] the model cited no passage" + (
            "; the grounding check found the passage(s) above that support the answer on their own" if supported_by else ""),
            highlight=False)
    if grounding is not None and not grounding["grounded"]:
        err_console.print("[yellow]warning:[/] some facts in the answer are not in the cited passages (grounding check)", highlight=False)
