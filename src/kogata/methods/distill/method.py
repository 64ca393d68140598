"""``distill``: train the input artifact (the student) to imitate a teacher on your texts (hf → hf).

Loss per token: ``alpha · CE(student, next token) + (1 − alpha) · T² · KL_T(teacher ‖ student)`` plus, with
``hidden_weight > 0``, ``hidden_weight ·`` the relative squared error ``Σ(h_s − h_t)² / Σh_t²`` between each
student block's output and the teacher's residual stream at the same place (for a depth-pruned student: the
output of the teacher block just before the next kept block, i.e. what the next kept block was trained to read;
the kept blocks come from the ``prune-depth`` lineage steps between teacher and student, or ``teacher_layers``).

Approximation (documented, tested): the teacher's distribution is cached once per (teacher, packed data, top-k)
as its ``topk`` largest log-probabilities (fp16) and their token ids (int32) at every position, under
``$KOGATA_HOME/cache/distill-topk/``. The KL is computed between the teacher's and the student's distributions
*renormalised over those k ids* at temperature ``T``; ``kl`` picks forward KL(p‖q), reverse KL(q‖p) or the
Jensen–Shannon divergence. Mass outside the top-k (recorded as ``teacher_topk_mass``) is ignored by the KL term;
the CE term (``alpha > 0``) keeps the student's full distribution calibrated. With ``alpha = 0`` the student's
logits are only computed for the k cached ids (much cheaper than the full vocabulary).

Training: see :mod:`.train_loop` (packing, held-out split, AdamW with warm-up + cosine, checkpoints every
``checkpoint_every`` steps in ``$KOGATA_HOME/runs/distill-<hash>/``, ``resume``, ``max_minutes``, DDP). The
artifact holds the weights with the lowest held-out loss. The lineage step records the loss curve
``history = [(step, train_loss, eval_loss), …]``.

Distributed / GPU: ``torchrun --nnodes N --nproc-per-node P -m kogata.methods.distill.method --student DIR --teacher DIR
--data FILE --out DIR [--steps …]`` (plain folders, no store needed). Each process uses ``cuda:LOCAL_RANK`` when
CUDA is available (nccl), the CPU otherwise (gloo); ``batch_size`` is per process, the global batch is
``batch_size × grad_accum × world size``.

Teacher-generated text (``gen_prompts_file``): the teacher samples ``gen_tokens`` tokens after each prompt; the
samples join the training texts (cached; generation time counts against ``max_minutes``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

import kogata.methods._shared.training as tl
from kogata.artifacts.artifact import Artifact
from kogata.core.errors import KogataError
from kogata.methods.distill.objective import Objective, StudentForward
from kogata.methods.registry import MethodContext, config_dict, new_step, register_method


@dataclass
class DistillConfig:
    teacher: str = ""  # teacher artifact (name or id); with `python -m kogata.methods.distill.method`, a folder
    alpha: float = 0.5  # weight of the plain next-token cross-entropy; 1 − alpha goes to the KL term
    temperature: float = 1.0
    kl: Literal["forward", "reverse", "jsd"] = "forward"
    topk: int = 64  # teacher log-probs cached per position
    kl_rest: bool = False  # KL over the top-k ids + one bucket for the rest (needs temperature 1), not renormalised top-k
    hidden_weight: float = 0.0  # weight of hidden-state alignment (needs equal hidden sizes; runs the teacher live)
    teacher_layers: list[int] | None = None  # teacher block each student block came from (default: from the lineage)
    block_size: int = 256
    batch_size: int = 4  # blocks per micro-batch and process
    grad_accum: int = 1
    steps: int = 200
    lr: float = 1e-4
    warmup: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_minutes: float | None = None  # time budget: stop cleanly, keep the best weights
    eval_every: int = 50
    eval_fraction: float = 0.1  # share of the packed blocks held out to pick the best weights
    checkpoint_every: int = 50
    resume: bool = True  # continue an interrupted run with the same settings from its last checkpoint
    gen_prompts_file: str | None = None  # prompts the teacher continues (a line of text or a JSONL record each); samples join the data
    gen_tokens: int = 128  # tokens sampled per prompt
    gen_temperature: float = 0.8

    def validate(self) -> None:
        def need(ok: bool, what: str, hint: str) -> None:
            if not ok:
                raise KogataError(f"distill: {what}", hint)

        need(bool(self.teacher), "no teacher given", "pass --set teacher=ARTIFACT (the model the student learns from)")
        need(0 <= self.alpha <= 1, f"alpha must be in [0, 1], got {self.alpha}", "1 = plain fine-tuning, 0 = pure distillation")
        need(self.temperature > 0, f"temperature must be positive, got {self.temperature}", "1.0 is the usual choice")
        need(self.topk >= 1, f"topk must be at least 1, got {self.topk}", "e.g. topk=64")
        need(not self.kl_rest or self.temperature == 1, "kl_rest needs temperature=1", "the cache holds temperature-1 log-probs")
        need(self.hidden_weight >= 0, f"hidden_weight cannot be negative, got {self.hidden_weight}", "0 turns it off")
        need(self.block_size >= 2, f"block_size must be at least 2, got {self.block_size}", "e.g. block_size=256")
        for key in ("batch_size", "grad_accum", "steps", "eval_every", "checkpoint_every"):
            need(getattr(self, key) >= 1, f"{key} must be at least 1, got {getattr(self, key)}", f"give {key} as a positive integer")
        need(self.lr > 0 and self.warmup >= 0 and self.weight_decay >= 0 and self.max_grad_norm >= 0,
             "lr must be positive; warmup, weight_decay and max_grad_norm non-negative", "e.g. lr=1e-4 warmup=10")
        need(0 <= self.eval_fraction < 1, f"eval_fraction must be in [0, 1), got {self.eval_fraction}", "e.g. 0.1")
        need(self.gen_tokens >= 1 and self.gen_temperature > 0, "gen_tokens and gen_temperature must be positive", "e.g. gen_tokens=128")
        need(self.gen_prompts_file is None or Path(self.gen_prompts_file).is_file(), f"gen_prompts_file {self.gen_prompts_file} does not exist",
             "give a text or JSONL file of prompts")
        need(self.max_minutes is None or self.max_minutes > 0, f"max_minutes must be positive, got {self.max_minutes}", "omit it for no time limit")


# ---- the store method -------------------------------------------------------------------------------------------
@register_method(
    "distill",
    DistillConfig,
    input_formats=("hf",),
    summary="train this model to imitate a teacher on your texts (top-k KD + CE, hidden alignment, resumable)",
    uses_data=True,
)
def distill(artifact: Artifact, cfg: DistillConfig, ctx: MethodContext) -> Artifact:
    from kogata.artifacts.load import load_torch
    from kogata.methods._shared.texts import read_texts
    from kogata.methods.prune.method import copy_side_files

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise KogataError("`kogata compress --method distill` runs in one process",
                          "for several processes use `torchrun ... -m kogata.methods.distill.method --student DIR --teacher DIR ...`")
    started = time.time()
    teacher_art = ctx.store.get(cfg.teacher)
    if teacher_art.format != "hf":
        raise KogataError(f"the teacher {teacher_art.name} is {teacher_art.format}", "use the hf artifact the GGUF was exported from")
    student, tok = load_torch(artifact)
    texts = read_texts(ctx.data)
    layers = None
    if cfg.hidden_weight > 0:
        layers = teacher_layer_map(artifact.lineage, teacher_art.lineage, _n_layers(student), _n_layers_dir(teacher_art.path), cfg.teacher_layers)
    model, metrics = distill_models(
        student, lambda: load_torch(teacher_art)[0], tok, lambda: _tokenizer(teacher_art.path), texts, cfg,
        student_key=artifact.id, teacher_key=teacher_art.id, teacher_layers=layers,
        run_root=ctx.store.home / "runs", cache_root=ctx.store.home / "cache", seed=ctx.seed, log=ctx.log,
        progress=ctx.progress, dist=tl.init_distributed(),
    )
    with ctx.store.stage() as st:
        copy_side_files(artifact.path, st.dir)
        model.save_pretrained(st.dir)
        step = new_step("distill", cfg, ctx, started, metrics=metrics, note="KL on top-k renormalised teacher/student distributions")
        out = st.commit(format="hf", name=ctx.artifact_name(f"{artifact.name}.distill"), parent=artifact, step=step,
                        architecture=artifact.architecture)
    tl.drop_checkpoints(Path(metrics["run_dir"]))
    return out


# ---- the trainer ------------------------------------------------------------------------------------------------
def distill_models(student: Any, load_teacher: Any, tokenizer: Any, load_teacher_tokenizer: Any, texts: list[str],
                   cfg: DistillConfig, *, student_key: str, teacher_key: str, teacher_layers: list[int] | None,
                   run_root: Path, cache_root: Path, seed: int, log: Any, progress: Any, dist: tl.Dist) -> tuple[Any, dict[str, Any]]:
    """Train ``student`` in place; return it holding the best weights, and the step metrics."""
    import kogata.core.settings as settings

    started = time.time()
    check_tokenizers(tokenizer, load_teacher_tokenizer())
    loaded: dict[str, Any] = {}

    def teacher_model() -> Any:  # loaded once, when first needed
        if "model" not in loaded:
            loaded["model"] = load_teacher().to(dist.device).eval()
        return loaded["model"]

    gen_seconds, n_texts = 0.0, len(texts)
    if cfg.gen_prompts_file:
        samples, gen_seconds = tl.teacher_samples(
            teacher_model, tokenizer, _prompts(Path(cfg.gen_prompts_file)), tokens=cfg.gen_tokens,
            temperature=cfg.gen_temperature, seed=seed, key={"teacher": teacher_key}, cache_root=Path(cache_root), dist=dist, log=log)
        texts = list(texts) + samples
    blocks = tl.pack_blocks(tokenizer, texts, cfg.block_size)
    train_idx, eval_idx = tl.split_blocks(len(blocks), cfg.eval_fraction, seed)
    global_batch = cfg.batch_size * cfg.grad_accum * dist.world
    if len(train_idx) < global_batch:
        raise KogataError(
            f"distill: the training data is smaller than one batch: {len(blocks)} blocks of {cfg.block_size} tokens "
            f"({len(eval_idx)} held out), but one step needs {global_batch} (batch_size × grad_accum × processes)",
            "give more text with --data, or lower block_size / batch_size / grad_accum / eval_fraction",
        )
    data_sha = hashlib.sha256(blocks.numpy().tobytes()).hexdigest()[:16]
    run_cfg = {k: v for k, v in config_dict(cfg).items() if k not in ("resume", "max_minutes", "teacher")}
    run_id = tl.short_hash({"student": student_key, "teacher": teacher_key, "data": data_sha, "cfg": run_cfg, "seed": seed})
    run_dir = Path(run_root) / f"distill-{run_id}"
    torch.manual_seed(seed)
    student.to(dist.device)
    teacher = None
    if cfg.hidden_weight > 0:
        teacher = teacher_model()
        if teacher.config.hidden_size != student.config.hidden_size:
            raise KogataError(f"hidden_weight needs equal hidden sizes (student {student.config.hidden_size}, teacher {teacher.config.hidden_size})",
                              "set hidden_weight=0 for a student with another width")
    cache = None
    if cfg.alpha < 1:
        cache = tl.TopKCache(Path(cache_root), teacher_key, data_sha, min(cfg.topk, _vocab_rows(student)), blocks.shape)
        if dist.main and not cache.valid():
            cache.build(teacher_model(), blocks, _vocab_rows(student), cfg.batch_size, dist.device, log)
        dist.barrier()
        cache.open()
    loaded.clear()  # without hidden alignment the teacher is not needed while training
    obj = Objective(student, teacher, cfg, teacher_layers)
    eval_parts: dict[str, float] = {}

    def batch_loss(model: torch.nn.Module, positions: list[int]) -> torch.Tensor:
        ids = [train_idx[p] for p in positions]
        return obj.loss(model, blocks[ids].to(dist.device), cache.get(ids, dist.device) if cache else None, train=True)[0]

    def eval_loss(model: torch.nn.Module) -> float | None:
        if not eval_idx:
            return None
        mine = eval_idx[dist.rank :: dist.world]
        sums = [0.0, 0.0, 0.0, 0.0]
        for i in range(0, len(mine), cfg.batch_size):
            ids = mine[i : i + cfg.batch_size]
            loss, parts = obj.loss(model, blocks[ids].to(dist.device), cache.get(ids, dist.device) if cache else None, train=False)
            sums = [sums[0] + float(loss) * len(ids), sums[1] + parts["ce"] * len(ids), sums[2] + parts.get("kl", 0.0) * len(ids), sums[3] + len(ids)]
        total = dist.sum(sums)
        eval_parts.update(ce=total[1] / total[3], kl=total[2] / total[3])
        eval_parts.setdefault("ce_first", eval_parts["ce"])
        eval_parts.setdefault("kl_first", eval_parts["kl"])
        return total[0] / total[3]

    loop_cfg = tl.LoopConfig(steps=cfg.steps, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum, lr=cfg.lr, warmup=cfg.warmup,
                             weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, eval_every=cfg.eval_every,
                             checkpoint_every=cfg.checkpoint_every, max_minutes=cfg.max_minutes, seed=seed, resume=cfg.resume,
                             tokens_per_block=cfg.block_size, time_used=gen_seconds)
    wrapper = StudentForward(student, capture=cfg.hidden_weight > 0)
    log(f"distill: {len(train_idx)} training blocks, {len(eval_idx)} held out, {cfg.block_size} tokens each; run folder {run_dir}")
    res = tl.run_loop(wrapper, batch_loss, eval_loss, len(train_idx), loop_cfg, run_dir, dist, log=log, progress=progress, label="distill")
    wrapper.load_state_dict(res.best_state)
    wrapper.remove_hooks()
    metrics = {
        "history": res.history, "best_step": res.best_step, "best_eval_loss": res.best_eval, "steps_done": res.steps_done,
        "stopped_by": res.stopped, "resumed_from": res.resumed_from, "train_seconds": round(res.elapsed_s, 1),
        "tokens_seen": res.steps_done * global_batch * cfg.block_size, "train_blocks": len(train_idx), "eval_blocks": len(eval_idx),
        "eval_ce_first": eval_parts.get("ce_first"), "eval_ce_last": eval_parts.get("ce"),
        "eval_kl_first": eval_parts.get("kl_first"), "eval_kl_last": eval_parts.get("kl"),
        "teacher_samples": len(texts) - n_texts, "gen_seconds": round(gen_seconds, 1),
        "teacher_topk_mass": cache.mass if cache else None, "teacher_layers": teacher_layers, "world_size": dist.world,
        "threads": settings.get_threads() if dist.device.type == "cpu" else None, "device": str(dist.device),
        "run_dir": str(run_dir), "wall_seconds": round(time.time() - started, 1),
    }
    if dist.main:
        (run_dir / "result.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return student.cpu(), metrics










# ---- checks and helpers -----------------------------------------------------------------------------------------
def check_tokenizers(student_tok: Any, teacher_tok: Any) -> None:
    a, b = student_tok.get_vocab(), teacher_tok.get_vocab()
    if a != b:
        differ = len({t for t in a.keys() & b.keys() if a[t] != b[t]}) + len(a.keys() ^ b.keys())
        raise KogataError(
            f"distill: student and teacher tokenizers differ ({len(a)} vs {len(b)} tokens, {differ} differ in text or id)",
            "distil into a student made from the teacher (prune-depth / prune-width) or one with the same tokenizer; "
            "cross-tokenizer distillation is not supported",
        )


def teacher_layer_map(student_lineage: list[dict], teacher_lineage: list[dict], n_student: int, n_teacher: int,
                      explicit: list[int] | None) -> list[int]:
    """For each student block, the teacher block it came from."""
    if explicit is not None:
        kept = list(explicit)
    elif student_lineage[: len(teacher_lineage)] == teacher_lineage and len(student_lineage) >= len(teacher_lineage):
        kept = list(range(n_teacher))
        for step in student_lineage[len(teacher_lineage) :]:
            if step.get("method") == "prune-depth":
                kept = [kept[j] for j in step["metrics"]["kept_layers"]]
    elif n_student == n_teacher:
        kept = list(range(n_teacher))
    else:
        raise KogataError(f"distill: cannot tell which teacher block each of the {n_student} student blocks came from",
                          "pass teacher_layers=i,j,… (one teacher block index per student block) or set hidden_weight=0")
    if len(kept) != n_student or any(not 0 <= k < n_teacher for k in kept) or kept != sorted(set(kept)):
        raise KogataError(f"distill: teacher_layers {kept} does not fit a {n_student}-block student of a {n_teacher}-block teacher",
                          f"give {n_student} increasing indices below {n_teacher}")
    return kept


def _prompts(path: Path) -> list[str]:
    """One prompt per JSONL record (its strings) or per non-empty line of a text file."""
    from kogata.methods._shared.texts import read_texts

    texts = read_texts([path]) if path.suffix.lower() in (".jsonl", ".json") else path.read_text(encoding="utf-8").splitlines()
    return [t for t in texts if t.strip()]


def _vocab_rows(model: Any) -> int:
    return int(model.get_output_embeddings().weight.shape[0])


def _n_layers(model: Any) -> int:
    return len(model.model.layers)


def _n_layers_dir(folder: Path) -> int:
    return int(json.loads((Path(folder) / "config.json").read_text())["num_hidden_layers"])


def _tokenizer(folder: Path) -> Any:
    from kogata.artifacts.load import load_tokenizer

    return load_tokenizer(Path(folder))


# ---- python -m kogata.methods.distill.method (plain folders; torchrun/accelerate launch for several processes) ----------
def folder_key(folder: Path) -> str:
    """An artifact's id when the folder is one, else a content hash of its files."""
    from kogata.artifacts.artifact import MANIFEST, content_id, hash_folder

    manifest = Path(folder) / MANIFEST
    if manifest.is_file():
        return json.loads(manifest.read_text())["id"]
    return content_id("hf", hash_folder(Path(folder)))


def _lineage(folder: Path) -> list[dict]:
    manifest = Path(folder) / "kogata.json"
    return json.loads(manifest.read_text()).get("lineage", []) if manifest.is_file() else []


def main(argv: list[str] | None = None) -> int:
    import argparse
    import dataclasses
    import sys

    import kogata.core.settings as settings
    from kogata.artifacts.load import load_torch
    from kogata.methods._shared.texts import read_texts
    from kogata.methods.prune.method import copy_side_files
    from kogata.methods.registry import build_config, get_method

    ap = argparse.ArgumentParser(prog="python -m kogata.methods.distill.method", description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", type=Path, required=True, help="HF folder of the student")
    ap.add_argument("--teacher", type=Path, required=True, help="HF folder of the teacher")
    ap.add_argument("--data", type=Path, action="append", required=True, help="text/JSONL file or folder; repeatable")
    ap.add_argument("--out", type=Path, required=True, help="folder to write the distilled student into")
    ap.add_argument("--run-dir", type=Path, help="where run folders go (default $KOGATA_HOME/runs)")
    ap.add_argument("--cache-dir", type=Path, help="where the teacher cache goes (default $KOGATA_HOME/cache)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="CPU threads per process")
    for f in dataclasses.fields(DistillConfig):
        if f.name != "teacher":
            ap.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None, help=f"(default {f.default!r})")
    args = ap.parse_args(argv)
    try:
        if args.threads:
            settings.set_threads(args.threads)
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(DistillConfig) if f.name != "teacher" and getattr(args, f.name) is not None}
        cfg = build_config(get_method("distill"), {**values, "teacher": str(args.teacher)})
        dist = tl.init_distributed()
        log = (lambda m: print(m, file=sys.stderr, flush=True)) if dist.main else (lambda m: None)
        student, tok = load_torch(args.student)
        if args.threads:
            settings.set_threads(args.threads)
        layers = None
        if cfg.hidden_weight > 0:
            layers = teacher_layer_map(_lineage(args.student), _lineage(args.teacher), _n_layers(student), _n_layers_dir(args.teacher), cfg.teacher_layers)
        home = settings.kogata_home()
        model, metrics = distill_models(
            student, lambda: load_torch(args.teacher)[0], tok, lambda: _tokenizer(args.teacher), read_texts(args.data), cfg,
            student_key=folder_key(args.student), teacher_key=folder_key(args.teacher), teacher_layers=layers,
            run_root=args.run_dir or home / "runs", cache_root=args.cache_dir or home / "cache", seed=args.seed, log=log,
            progress=None, dist=dist,
        )
        if dist.main:
            args.out.mkdir(parents=True, exist_ok=True)
            copy_side_files(args.student, args.out)
            (args.out / "kogata.json").unlink(missing_ok=True)
            model.save_pretrained(args.out)
            tl.drop_checkpoints(Path(metrics["run_dir"]))
            print(json.dumps({"out": str(args.out), **{k: v for k, v in metrics.items() if k != "history"}}), flush=True)
        dist.barrier()
    except KogataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":  # run the package's copy of main(), so that the registry sees one DistillConfig
    from kogata.methods.distill.method import main as _main

    raise SystemExit(_main())
