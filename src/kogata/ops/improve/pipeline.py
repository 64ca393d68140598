"""``kogata improve``: reviewed corrections → curated data → LoRA → merge → the production quantization → eval
against production → gates → alias ``candidate`` (or a plain statement of why not).

Stages, each resumable (a rerun with the same ``--out`` continues where a killed run stopped):

1. **corrections** — the review export's records for the production model's family
   (:mod:`kogata.ops.improve.corrections`); fewer than ``min_corrections`` → refuse, saying how many are missing.
   A hash-chosen share is held out for scoring.
2. **data** — ``kogata data prepare`` over the training corrections plus the original training data, with the
   suite's items and the held-out corrections as ``exclude`` (what is tested is never trained on). Published
   atomically; a rerun reuses it.
3. **build** — LoRA on production's float parent (the nearest ``hf`` ancestor, or the float model converted from
   it), merge, then the steps that made production from that parent (export-gguf, quantize …). Every step is
   an artifact; the method registry reuses one made earlier with the same config and data, and LoRA resumes
   from its last checkpoint.
4. **eval** — ``kogata eval`` of production and candidate on the suite plus a ``corrections_heldout`` task
   (chat prompts → corrected answers, token F1/ROUGE-L), same runtime, threads and items.
5. **decision** — the candidate passes when (a) it passes every KPI of the suite, (b) no suite task is *worse*
   under the same non-inferiority test ``kogata optimize`` uses (:mod:`kogata.eval.noninferiority`), and (c)
   on the held-out corrections it beats production: the paired 95% interval of the F1 difference lies above
   zero (``require: significant``, default) or at least the estimate does (``require: better``). Then alias
   ``candidate`` points at it; ``kogata models alias promote candidate`` makes it production.

Nothing here writes a report: the command passes a writer (the report layer sits above ops).
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError
from kogata.core.io import atomic_text_file, atomic_write_json
from kogata.ops.improve.corrections import Corrections, load_corrections, training_record

IMPROVE_VERSION = 1
STATE_FILE = "state.json"
RESULT_FILE = "improve.json"
HELDOUT_TASK = "corrections_heldout"
DEFAULT_LORA: dict[str, Any] = {"steps": 40, "rank": 8, "alpha": 16, "lr": 1e-3, "batch_size": 4,
                                "gradient_checkpointing": True, "save_every": 10}
REQUIRE = ("significant", "better", "none")
Log = Callable[[str], None]


@dataclass
class ImproveConfig:
    corrections: Path  # a `kogata review export` folder
    suite: str  # built-in suite name or suite file: the KPIs the candidate must pass
    out: Path  # work and result folder (rerun the same command to resume)
    production: str = "production"  # alias, or artifact name/id
    data: list[Path] = field(default_factory=list)  # the original training data, trained on with the corrections
    min_corrections: int = 50
    heldout_fraction: float = 0.2
    lora: dict[str, Any] = field(default_factory=dict)  # overrides of DEFAULT_LORA (any `lora` method parameter)
    runtime: str | None = None  # default: llamacpp for a GGUF production, torch for hf
    limit: int | None = None  # items per suite task (None: all)
    threads: int | None = None
    alias: str = "candidate"
    require: str = "significant"
    margins: dict[str, float] | None = None  # non-inferiority margins per task, as optimize's quality_margins
    max_tokens: int = 96  # answer length when scoring the held-out corrections
    seed: int = 0

    def validate(self) -> None:
        if self.min_corrections < 1:
            raise KogataError(f"--min-corrections {self.min_corrections} must be at least 1", "the default is 50")
        if not 0 < self.heldout_fraction < 0.9:
            raise KogataError(f"--heldout {self.heldout_fraction} must be between 0 and 0.9", "e.g. 0.2: a fifth of the corrections score the candidate")
        if self.require not in REQUIRE:
            raise KogataError(f"--require {self.require!r} is not one of {', '.join(REQUIRE)}", "significant (default): the interval of the gain must exclude zero")
        for p in self.data:
            if not Path(p).exists():
                raise KogataError(f"--data {p} does not exist", "give the original training data (files or folders), or leave --data out")
        unknown = set(self.lora) - _lora_fields()
        if unknown:
            raise KogataError(f"--lora-set {', '.join(sorted(unknown))}: not a parameter of the lora method",
                              f"lora parameters: {', '.join(sorted(_lora_fields()))}")

    def signature(self) -> str:
        """What decides the result (a rerun with another signature must not mix into this folder)."""
        d = dataclasses.asdict(self)
        d.pop("out")
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _lora_fields() -> set[str]:
    from kogata.methods.registry import get_method

    return {f.name for f in dataclasses.fields(get_method("lora").config_cls)}


# ---- the production model and its family -----------------------------------------------------------
def resolve_production(store: Any, ref: str) -> tuple[Any, str | None]:
    """(artifact, alias or None): ``ref`` is an alias of the store, else an artifact name or id."""
    from kogata.ops.aliases import current_aliases

    alias = current_aliases(store.engine).get(ref)
    if alias is not None:
        return store.get(alias["artifact_id"]), ref
    art = store.find(ref)
    if art is None:
        raise KogataError(f"--production {ref!r} is neither an alias nor an artifact",
                          "set one with `kogata models alias set production ARTIFACT`, or name the artifact")
    return art, None


def _ancestors(store: Any, art: Any, by_id: dict[str, Any] | None = None) -> list[Any]:
    """``art``'s parent, grandparent … as far as the store has them (``by_id``: the store's artifacts, if listed already)."""
    by_id = by_id if by_id is not None else {a.id: a for a in store.list()}
    out, seen = [], {art.id}
    while art.parent and art.parent not in seen and art.parent in by_id:
        art = by_id[art.parent]
        out.append(art)
        seen.add(art.id)
    return out


def model_family(store: Any, production: Any) -> set[str]:
    """Ids of every artifact sharing production's root (its ancestors, their other descendants, earlier rounds)."""
    by_id = {a.id: a for a in store.list()}

    def root_of(a: Any) -> str:
        return (_ancestors(store, a, by_id) or [a])[-1].id

    root = root_of(production)
    return {i for i, a in by_id.items() if root_of(a) == root} | {production.id}


def _is_float_model(a: Any) -> bool:
    return a.format == "hf" and a.kind == "causal-lm"


def float_parent(store: Any, production: Any) -> tuple[Any, list[dict[str, Any]]]:
    """(the float model LoRA trains on, the steps that turn its merged result into production's format).

    Production made from an ``hf`` ancestor: that ancestor and the recorded steps after it (export-gguf,
    quantize …). A GGUF that was imported as it is (e.g. a catalog model) has no such ancestor; then the float
    model converted from it (``kogata models import``/``convert`` children) and, for the steps, an F32 export
    plus production's own quantization type.
    """
    if _is_float_model(production):
        return production, []
    for anc in _ancestors(store, production):
        if _is_float_model(anc):
            steps = [{"method": s["method"], "params": s.get("config") or {}}
                     for s in production.lineage[len(anc.lineage):] if s.get("method") not in ("lora", "merge", "import")]
            return anc, steps
    for child in store.children(production.id):
        if _is_float_model(child):
            from kogata.methods.quantize.gguf_facts import source_file_type

            qtype = source_file_type(production.gguf_path)
            steps = [{"method": "export-gguf", "params": {"out_type": "f32"}}]
            if qtype not in ("F32", "unknown") and not qtype.isdigit():  # an unnamed type: export only
                steps.append({"method": "quantize", "params": {"type": qtype}})
            return child, steps
    raise KogataError(
        f"production {production.name} has no float (safetensors) model in the store to train LoRA on",
        "convert it first (kogata models import / pull the hf version) or set --production to an hf artifact",
    )


# ---- the pipeline -----------------------------------------------------------------------------------
class _State:
    def __init__(self, out: Path, signature: str):
        self.path = out / STATE_FILE
        self.doc: dict[str, Any] = {"version": IMPROVE_VERSION, "signature": signature, "stages": {}}
        if self.path.is_file():
            old = json.loads(self.path.read_text(encoding="utf-8"))
            if old.get("signature") != signature:
                raise KogataError(f"{out} holds an improve run with other settings",
                                  "rerun with the same options to resume it, or give a new --out")
            self.doc = old

    def get(self, stage: str) -> dict[str, Any] | None:
        return self.doc["stages"].get(stage)

    def done(self, stage: str, **values: Any) -> dict[str, Any]:
        self.doc["stages"][stage] = {"at": time.time(), **values}
        atomic_write_json(self.doc, self.path)
        return self.doc["stages"][stage]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    with atomic_text_file(path) as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return path


def _suite_items(suite: Any) -> list[dict[str, Any]]:
    """Every string field of every suite item, one ``{"text"}`` record each (the reference for decontamination:
    a training record that repeats any one of them — a test question, passage or answer — is removed)."""
    rows, seen = [], set()
    for task in suite.tasks:
        for rec in getattr(task, "records", []) or []:
            for v in rec.values() if isinstance(rec, dict) else ():
                if isinstance(v, str) and v.strip() and v not in seen:
                    seen.add(v)
                    rows.append({"text": v})
    return rows


def _heldout_task(suite: Any, path: Path, max_tokens: int) -> Any:
    from kogata.eval.tasks import build_task

    cfg = {"name": HELDOUT_TASK, "type": "generate", "version": 1, "data": path.name, "prompt": "{prompt}",
           "target": "{response}", "fields": {"prompt": "prompt", "response": "response"}, "chat": True,
           "max_tokens": max_tokens, "stop": [], "metrics": ["f1", "rouge_l"]}  # no description: it would be the system prompt
    return build_task(cfg, base_dir=path.parent, seed=suite.seed, language=suite.language, source="kogata improve")


def improve(cfg: ImproveConfig, store: Any, *, log: Log = print, progress: Any = None,
            write_reports: Callable[[dict[str, Any], Path], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the improvement; returns the result document (also ``out/improve.json``)."""
    from kogata.eval.suite import load_suite

    cfg.validate()
    started = time.time()
    out = Path(cfg.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    state = _State(out, cfg.signature())
    timings: dict[str, float] = {}

    # 1. corrections
    production, prod_alias = resolve_production(store, cfg.production)
    family = model_family(store, production)
    corr = load_corrections(cfg.corrections, family)
    _check_enough(corr, cfg, production)
    train, held = corr.split(cfg.heldout_fraction)
    if len(held) < 5 or not train:
        raise KogataError(f"{len(corr.records)} corrections split into {len(train)} to train on and {len(held)} to score with",
                          "at least 5 must be held out: collect more corrections or raise --heldout")
    suite = load_suite(cfg.suite)
    base, replay = float_parent(store, production)
    log(f"production: {production.name} ({production.id[:12]}){f' = alias {prod_alias}' if prod_alias else ''}; "
        f"LoRA on {base.name} ({base.id[:12]}), then {' → '.join(s['method'] for s in replay) or 'nothing'}")
    log(f"corrections: {len(corr.records)} for this model ({len(train)} train, {len(held)} held out)"
        + (f"; {sum(corr.other_base.values())} for other models ignored" if corr.other_base else ""))

    # 2. data
    t0 = time.time()
    data_dir = out / "data"
    data_dir.mkdir(exist_ok=True)
    held_path = _write_jsonl(data_dir / "corrections-heldout.jsonl", [training_record(r) for r in held])
    train_path = _write_jsonl(data_dir / "corrections-train.jsonl", [training_record(r) for r in train])
    items_path = _write_jsonl(data_dir / "suite-items.jsonl", _suite_items(suite))
    prepared = data_dir / "prepared"
    done = state.get("data")
    if done is None or not (prepared / "data.jsonl").is_file():
        from kogata.data.prepare import PrepareConfig, prepare

        if prepared.exists():
            import shutil

            shutil.rmtree(prepared)
        log("data: curating corrections + training data (PII scrub, dedup, held-out items removed)")
        manifest = prepare([train_path, *map(Path, cfg.data)], prepared,
                           PrepareConfig(min_chars=8, seed=cfg.seed, exclude=(str(items_path), str(held_path))), progress=progress)
        done = state.done("data", records=manifest["records"], removed={k: v["count"] for k, v in manifest["removed"].items()},
                          fingerprint=manifest.get("fingerprint"))
    timings["data_s"] = time.time() - t0
    log(f"data: {done['records']} training records; removed {done['removed'] or 'none'}")

    # 3. build
    t0 = time.time()
    from kogata.methods.recipe import run_steps
    from kogata.methods.registry import MethodContext

    lora = {**DEFAULT_LORA, **cfg.lora, "resume": True}
    steps = [{"method": "lora", "params": lora}, {"method": "merge"}, *replay]
    ctx = MethodContext(store=store, data=[prepared / "data.jsonl"], seed=cfg.seed, log=log, progress=progress)
    built = run_steps(base, steps, ctx)
    candidate = built[-1].artifact
    lora_metrics = next((s.artifact.lineage[-1].get("metrics") or {} for s in built if s.step.get("method") == "lora"), {})
    state.done("build", candidate=candidate.id, artifacts=[s.artifact.id for s in built])
    timings["build_s"] = time.time() - t0
    log(f"candidate: {candidate.name} ({candidate.id[:12]})")

    # 4. eval
    t0 = time.time()
    results = _evaluate(cfg, suite, production, candidate, held_path, out, store, log, progress, write_reports, state)
    timings["eval_s"] = time.time() - t0

    # 5. decision
    decision = decide(results, production.id, candidate.id, suite, cfg)
    if decision["passed"] and candidate.id != production.id:
        from kogata.ops.aliases import record_alias

        record_alias(store.engine, cfg.alias, candidate.id, by=getpass.getuser(), reason=decision["summary"])
        decision["alias"] = cfg.alias
    timings["total_s"] = time.time() - started
    doc = {
        "version": IMPROVE_VERSION, "created": time.time(), "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "production": _art(production, prod_alias), "candidate": _art(candidate, decision.get("alias")),
        "float_parent": _art(base, None), "steps": [s.step.get("method") for s in built],
        "corrections": {"for_model": len(corr.records), "train": len(train), "heldout": len(held),
                        "other_models": corr.other_base, "export": str(corr.folder)},
        "data": {k: done.get(k) for k in ("records", "removed", "fingerprint")},
        "lora": {k: lora_metrics.get(k) for k in ("steps_done", "train_loss_first", "train_loss_last", "eval_loss_start",
                                                  "eval_loss_end", "train_s", "train_examples", "resumed_from")},
        "decision": decision, "timings": timings, "eval": str(out / "eval"),
    }
    atomic_write_json(doc, out / RESULT_FILE)
    return doc


def _check_enough(corr: Corrections, cfg: ImproveConfig, production: Any) -> None:
    n = len(corr.records)
    if n >= cfg.min_corrections:
        return
    other = sum(corr.other_base.values())
    if n == 0 and other:
        ids = ", ".join(a[:12] for a in sorted(corr.other_base))
        raise KogataError(f"{corr.folder}: all {other} corrections are answers of other models ({ids}), none of {production.name}'s family",
                          "export the corrections of the production model's answers, or set --production to the model they are for")
    raise KogataError(
        f"{corr.folder}: {n} approved corrections for {production.name}; improve needs at least {cfg.min_corrections} "
        f"({cfg.min_corrections - n} more)",
        "review more answers in the queue (kogata review / the web UI), export again, or lower --min-corrections")


def _art(a: Any, alias: str | None) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "format": a.format, "bytes": a.bytes, "alias": alias}


def _evaluate(cfg: ImproveConfig, suite: Any, production: Any, candidate: Any, held_path: Path, out: Path, store: Any,
              log: Log, progress: Any, write_reports: Any, state: _State) -> dict[str, Any]:
    from kogata.eval.run import EvalProgress, run_eval

    eval_dir = out / "eval"
    done = state.get("eval")
    if done is not None and (eval_dir / "results.json").is_file():
        results = json.loads((eval_dir / "results.json").read_text(encoding="utf-8"))
        ids = {e["artifact"]["id"] for e in results.get("entries", [])}
        if {production.id, candidate.id} <= ids:
            log("eval: reusing the finished evaluation")
            return results
    runtime = cfg.runtime or ("llamacpp" if production.format == "gguf" else "torch")
    extended = dataclasses.replace(suite, tasks=[*suite.tasks, _heldout_task(suite, held_path, cfg.max_tokens)])
    extended.baseline = production.id
    log(f"eval: production vs candidate on {suite.name} + {HELDOUT_TASK} ({runtime})")

    class _Log(EvalProgress):
        def stage(self, key: str, text: str) -> None:
            log(f"eval {key}: {text}")

    arts = [production] if production.id == candidate.id else [production, candidate]
    results = run_eval(arts, extended, [runtime], limit=cfg.limit, threads=cfg.threads, out_dir=eval_dir,
                       progress=_Log(), write_reports=write_reports)
    state.done("eval", results=str(eval_dir / "results.json"))
    return results


def decide(results: dict[str, Any], production_id: str, candidate_id: str, suite: Any, cfg: ImproveConfig) -> dict[str, Any]:
    """The three gates (see the module doc) and a one-line summary of the outcome."""
    from kogata.eval.noninferiority import paired_difference, quality_gate

    entries = {e["artifact"]["id"]: e for e in results.get("entries", [])}
    prod, cand = entries.get(production_id), entries.get(candidate_id)
    reasons: list[str] = []
    if cand is None or prod is None or cand.get("status") == "error" or prod.get("status") == "error":
        bad = next((e for e in (cand, prod) if e is not None and e.get("status") == "error"), None)
        return {"passed": False, "reasons": [f"evaluation failed: {bad['error'] if bad else 'entry missing'}"],
                "summary": "not promoted: the evaluation failed", "kpi": None, "tasks": [], "corrections": None}
    kpi = cand.get("kpi") or {}
    if kpi.get("verdict") != "PASS":
        reasons.append("KPI failed: " + ", ".join(kpi.get("failed") or ["?"]))
    suite_quality = {k: v for k, v in (prod.get("quality") or {}).items() if k != HELDOUT_TASK}
    gate = quality_gate(cand, {"quality": suite_quality}, cfg.margins)
    for t in gate["tasks"]:
        if t["verdict"] == "worse":
            reasons.append(f"{t['task']}.{t['metric']} worse than production beyond its margin "
                           f"({t['improvement']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}], margin {t['margin']})")
    held = paired_difference((cand.get("quality") or {}).get(HELDOUT_TASK, {}), (prod.get("quality") or {}).get(HELDOUT_TASK, {}),
                             "f1", relative=False)
    if held is None:
        reasons.append("the held-out corrections could not be compared")
    elif cfg.require == "significant" and not held["ci_low"] > 0:
        reasons.append(f"not proven better on the held-out corrections: F1 {held['improvement']:+.3f} "
                       f"[{held['ci_low']:+.3f}, {held['ci_high']:+.3f}] (the interval must exclude zero)")
    elif cfg.require == "better" and not held["improvement"] > 0:
        reasons.append(f"not better on the held-out corrections: F1 {held['improvement']:+.3f}")
    passed = not reasons
    gain = f"F1 {held['baseline']:.3f} → {held['value']:.3f} ({held['improvement']:+.3f} [{held['ci_low']:+.3f}, {held['ci_high']:+.3f}])" if held else "F1 n/a"
    summary = (f"kogata improve: held-out corrections {gain}; KPIs pass; no task worse" if passed
               else f"not promoted: {reasons[0]}")
    return {"passed": passed, "reasons": reasons, "summary": summary, "kpi": kpi, "tasks": gate["tasks"],
            "corrections": held, "require": cfg.require}
