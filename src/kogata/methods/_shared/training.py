"""The training loop shared by training methods (``distill``): text packing, batching, DDP, checkpoints, resume.

* Texts are tokenised, joined with EOS after each document and cut into blocks of ``block_size`` tokens (the
  tail shorter than a block is dropped). A seeded share of the blocks is held out for evaluation.
* Batches: the blocks of step ``s`` are entries ``s·G … (s+1)·G − 1`` of an endless stream of seeded
  permutations (one per epoch), ``G = batch_size × grad_accum × world_size``. The data order is thus a pure
  function of (seed, step): a resumed run and a run on N processes see the same blocks as one uninterrupted,
  single-process run with the same global batch.
* Distributed data parallel: launched by ``torchrun``/``accelerate launch`` (``WORLD_SIZE``/``RANK``/
  ``LOCAL_RANK`` in the environment) the loop initialises ``torch.distributed`` (gloo on CPU, nccl on CUDA),
  wraps the model in ``DistributedDataParallel`` and gives rank ``r`` its slice of each global batch; gradients
  are averaged by DDP. Only rank 0 writes checkpoints and results; stopping decisions are broadcast.
* Checkpoints (every ``checkpoint_every`` steps, and when stopping): ``checkpoint.pt`` holds model, optimizer,
  scheduler, torch RNG state, step, loss history, elapsed time and the weights with the lowest eval loss so far,
  in one file written to a temporary name and renamed, so a kill never leaves a half-written or inconsistent
  checkpoint behind.
* Teacher data for distillation: :class:`TopKCache` (the teacher's top-k log-probs per position, computed once and
  memory-mapped) and :func:`teacher_samples` (the teacher's continuations of prompts, cached as JSON). Both live
  under ``<cache root>/distill-*/`` keyed by content hashes and are written by rank 0 only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kogata.core.errors import KogataError
from kogata.methods.prune.importance import pack_ids


# ---- data ------------------------------------------------------------------------------------------------------
def pack_blocks(tokenizer: Any, texts: list[str], block_size: int) -> torch.Tensor:
    """All texts as one token stream (EOS after each document) cut into ``[n_blocks, block_size]``."""
    ids = pack_ids(tokenizer, texts)
    n = len(ids) // block_size
    return torch.tensor(ids[: n * block_size], dtype=torch.long).reshape(n, block_size)


def split_blocks(n_blocks: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train block indices, eval block indices): a seeded ``eval_fraction`` share (≥ 1 block) is held out."""
    if eval_fraction <= 0 or n_blocks < 2:
        return list(range(n_blocks)), []
    perm = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed + 1)).tolist()
    n_eval = max(1, round(n_blocks * eval_fraction))
    return sorted(perm[n_eval:]), sorted(perm[:n_eval])


def step_blocks(step: int, n_train: int, global_batch: int, seed: int) -> list[int]:
    """Positions (into the training blocks) of the global batch of optimizer step ``step``."""
    out = []
    for pos in range(step * global_batch, (step + 1) * global_batch):
        epoch, i = divmod(pos, n_train)
        out.append(_epoch_perm(epoch, n_train, seed)[i])
    return out


_PERMS: dict[tuple[int, int, int], list[int]] = {}


def _epoch_perm(epoch: int, n: int, seed: int) -> list[int]:
    key = (epoch, n, seed)
    if key not in _PERMS:
        if len(_PERMS) > 64:
            _PERMS.clear()
        _PERMS[key] = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch)).tolist()
    return _PERMS[key]


CACHE_VERSION = 1


# ---- the teacher's top-k cache ----------------------------------------------------------------------------------
class TopKCache:
    """``values.npy`` (fp16 log-probs, [blocks, block_size, k]) and ``indices.npy`` (int32), built once, memory-mapped."""

    def __init__(self, root: Path, teacher_key: str, data_sha: str, k: int, shape: tuple[int, ...]):
        self.k, self.shape = k, (int(shape[0]), int(shape[1]), k)
        self.key = short_hash({"teacher": teacher_key, "data": data_sha, "k": k, "shape": self.shape, "v": CACHE_VERSION})
        self.dir = root / "distill-topk" / self.key
        self.values = self.indices = None
        self.mass: float | None = None

    def valid(self) -> bool:
        try:
            meta = json.loads((self.dir / "meta.json").read_text())
            ok = tuple(meta["shape"]) == self.shape
            v = np.load(self.dir / "values.npy", mmap_mode="r")
            i = np.load(self.dir / "indices.npy", mmap_mode="r")
            return ok and v.shape == self.shape and i.shape == self.shape
        except (OSError, ValueError, KeyError):
            return False

    @torch.no_grad()
    def build(self, teacher: Any, blocks: torch.Tensor, vocab: int, batch: int, device: torch.device, log: Any) -> None:
        log(f"distill: caching the teacher's top-{self.k} log-probs for {blocks.numel()} tokens in {self.dir}")
        values = np.empty(self.shape, dtype=np.float16)
        indices = np.empty(self.shape, dtype=np.int32)
        mass = 0.0
        for s in range(0, len(blocks), batch):
            logits = teacher(input_ids=blocks[s : s + batch].to(device), use_cache=False).logits[..., :vocab].float()
            v, i = torch.topk(torch.log_softmax(logits, dim=-1), self.k, dim=-1)
            values[s : s + batch] = v.cpu().numpy().astype(np.float16)
            indices[s : s + batch] = i.cpu().numpy().astype(np.int32)
            mass += float(v.exp().sum(-1).sum())
        part = self.dir.with_name(f"{self.dir.name}.part-{os.getpid()}")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        np.save(part / "values.npy", values)
        np.save(part / "indices.npy", indices)
        (part / "meta.json").write_text(json.dumps({"shape": self.shape, "topk_mass": mass / (self.shape[0] * self.shape[1])}))
        shutil.rmtree(self.dir, ignore_errors=True)
        os.replace(part, self.dir)

    def open(self) -> None:
        self.values = np.load(self.dir / "values.npy", mmap_mode="r")
        self.indices = np.load(self.dir / "indices.npy", mmap_mode="r")
        self.mass = round(float(json.loads((self.dir / "meta.json").read_text())["topk_mass"]), 4)

    def get(self, ids: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.from_numpy(np.ascontiguousarray(self.values[ids])).to(device)
        i = torch.from_numpy(np.ascontiguousarray(self.indices[ids]).astype(np.int64)).to(device)
        return v, i


def teacher_samples(load_teacher: Callable[[], Any], tokenizer: Any, prompts: list[str], *, tokens: int, temperature: float,
                    seed: int, key: dict[str, Any], cache_root: Path, dist: Dist, log: Callable[[str], None]) -> tuple[list[str], float]:
    """Each prompt followed by the teacher's sampled continuation (cached: the same prompts, settings and seed give the
    same texts), and the seconds spent generating in this call (0 when cached)."""
    path = cache_root / "distill-gen" / f"{short_hash({**key, 'prompts': prompts, 'tokens': tokens, 't': temperature, 'seed': seed})}.json"
    spent = 0.0
    if dist.main and not path.is_file():
        t0 = time.time()
        log(f"distill: sampling {tokens} tokens from the teacher for each of {len(prompts)} prompts")
        texts = _generate(load_teacher(), tokenizer, prompts, tokens, temperature, seed, dist.device)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.part-{os.getpid()}")
        part.write_text(json.dumps({"texts": texts}, ensure_ascii=False), encoding="utf-8")
        os.replace(part, path)
        spent = time.time() - t0
    dist.barrier()
    return json.loads(path.read_text(encoding="utf-8"))["texts"], spent


@torch.no_grad()
def _generate(model: Any, tok: Any, prompts: list[str], tokens: int, temperature: float, seed: int, device: torch.device,
              batch: int = 16) -> list[str]:
    torch.manual_seed(seed)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        enc = [tok(prompts[i], add_special_tokens=False)["input_ids"] or [pad] for i in idx]
        width = max(map(len, enc))
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in enc], device=device)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in enc], device=device)
        gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                             max_new_tokens=tokens, pad_token_id=pad)
        for j, i in enumerate(idx):
            out[i] = prompts[i] + tok.decode(gen[j, width:], skip_special_tokens=True)
    return out


def short_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---- distributed -----------------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over all processes."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        return self.sum([1.0 if flag else 0.0])[0] > 0


def init_distributed() -> Dist:
    """A :class:`Dist` from the launcher's environment; initialises the process group when ``WORLD_SIZE > 1``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(rank=rank, world=world, device=device)


# ---- schedule, checkpoints -------------------------------------------------------------------------------------
def lr_factor(step: int, warmup: int, steps: int, floor: float = 0.1) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``floor`` × lr at ``steps``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def save_atomic(obj: Any, path: Path) -> None:
    part = path.with_name(path.name + ".part")
    torch.save(obj, part)
    os.replace(part, path)


def load_checkpoint(path: Path, run_dir: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, wrong format: all mean the same to the user
        raise KogataError(
            f"checkpoint {path} is corrupted or unreadable ({type(exc).__name__}: {str(exc)[:120]})",
            f"delete {path} (or the run folder {run_dir}) to start over, or pass resume=false",
        ) from None


def drop_checkpoints(run_dir: Path) -> None:
    """Once the result is saved, the big resume files are no longer needed (other files in the run folder stay)."""
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)


# ---- progress --------------------------------------------------------------------------------------------------
class Reporter:
    """A progress bar (rich, when the caller has one) or periodic log lines with loss, tokens/s and ETA."""

    def __init__(self, progress: Any, log: Callable[[str], None], label: str, total: int, start: int, enabled: bool):
        self.progress, self.log, self.label, self.total, self.enabled = progress, log, label, total, enabled
        self.t0, self.s0, self.last_log = time.time(), start, 0.0
        self.task = progress.add_task(label, total=total, completed=start) if (progress is not None and enabled) else None

    def update(self, step: int, loss: float, tokens_per_step: int) -> None:
        if not self.enabled:
            return
        dt = max(1e-9, time.time() - self.t0)
        done = step - self.s0
        tps = done * tokens_per_step / dt
        eta = (self.total - step) * dt / max(1, done)
        text = f"{self.label} loss {loss:.3f} · {tps:,.0f} tok/s · ETA {eta / 60:.1f} min"
        if self.task is not None:
            self.progress.update(self.task, completed=step, description=text)
        elif time.time() - self.last_log > 20 or step == self.total:
            self.last_log = time.time()
            self.log(f"step {step}/{self.total} {text}")


# ---- the loop --------------------------------------------------------------------------------------------------
@dataclass
class LoopConfig:
    steps: int
    batch_size: int
    grad_accum: int
    lr: float
    warmup: int
    weight_decay: float
    max_grad_norm: float
    eval_every: int
    checkpoint_every: int
    max_minutes: float | None
    seed: int
    resume: bool
    tokens_per_block: int
    time_used: float = 0.0  # seconds already spent on this run before the loop (counted against max_minutes)


@dataclass
class LoopResult:
    best_state: dict[str, torch.Tensor]
    history: list[tuple[int, float | None, float | None]]
    best_step: int
    best_eval: float | None
    steps_done: int
    stopped: str  # "steps" | "time"
    resumed_from: int | None
    elapsed_s: float


BatchLoss = Callable[[torch.nn.Module, list[int]], torch.Tensor]  # (wrapped model, train positions) -> mean loss
EvalLoss = Callable[[torch.nn.Module], float | None]  # (unwrapped module) -> eval loss, same on every rank


def on_step(step: int) -> None:
    """Called after each completed optimizer step (tests replace it to simulate a kill)."""


def run_loop(module: torch.nn.Module, batch_loss: BatchLoss, eval_loss: EvalLoss, n_train: int, cfg: LoopConfig,
             run_dir: Path, dist: Dist, *, log: Callable[[str], None], progress: Any = None, label: str = "train") -> LoopResult:
    """Optimise ``module`` (AdamW, warm-up + cosine) and return the weights with the best eval loss."""
    global_batch = cfg.batch_size * cfg.grad_accum * dist.world
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup, cfg.steps))
    wrapped: torch.nn.Module = module
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(module, device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
                                          broadcast_buffers=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"
    torch.manual_seed(cfg.seed)
    step, history, elapsed, resumed_from = 0, [], cfg.time_used, None
    best = {"eval": None, "step": 0, "state": None}
    if cfg.resume and ckpt_path.exists():
        ck = load_checkpoint(ckpt_path, run_dir)
        try:
            module.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            torch.set_rng_state(ck["rng"])
            step, history, elapsed = int(ck["step"]), [tuple(h) for h in ck["history"]], float(ck["elapsed"])
            best.update(eval=ck["best_eval"], step=ck["best_step"], state=ck["best_state"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise KogataError(f"checkpoint {ckpt_path} does not match this run ({str(exc)[:120]})",
                              f"delete {run_dir} or pass resume=false") from None
        resumed_from = step
        log(f"{label}: resuming from step {step} ({ckpt_path})")
    elif not cfg.resume and dist.main:
        ckpt_path.unlink(missing_ok=True)
    dist.barrier()

    def evaluate(at: int, train_loss: float | None) -> None:
        module.eval()
        with torch.no_grad():
            ev = eval_loss(module)
        module.train()
        history.append((at, None if train_loss is None else round(train_loss, 6), None if ev is None else round(ev, 6)))
        improved = ev is not None and (best["eval"] is None or ev < best["eval"])
        if improved or ev is None:  # without held-out data the latest weights are the best we know
            best.update(eval=ev, step=at, state={k: v.detach().cpu().clone() for k, v in module.state_dict().items()})
        if ev is not None:
            log(f"{label}: step {at} train {train_loss if train_loss is not None else float('nan'):.4f} eval {ev:.4f}")

    def checkpoint() -> None:
        if dist.main:
            save_atomic({"model": module.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                         "rng": torch.get_rng_state(), "step": step, "history": history, "elapsed": elapsed + (time.time() - t0),
                         "best_eval": best["eval"], "best_step": best["step"], "best_state": best["state"]}, ckpt_path)
        dist.barrier()

    t0 = time.time()
    if step == 0 and not history:
        evaluate(0, None)
    reporter = Reporter(progress, log, label, cfg.steps, step, dist.main)
    module.train()
    stopped, since_eval = "steps", []
    per_rank = cfg.batch_size * cfg.grad_accum
    while step < cfg.steps:
        blocks = step_blocks(step, n_train, global_batch, cfg.seed)[dist.rank * per_rank : (dist.rank + 1) * per_rank]
        total = 0.0
        for m in range(cfg.grad_accum):
            micro = blocks[m * cfg.batch_size : (m + 1) * cfg.batch_size]
            sync = m == cfg.grad_accum - 1 or not dist.active
            with contextlib.nullcontext() if sync else wrapped.no_sync():
                loss = batch_loss(wrapped, micro) / cfg.grad_accum
                loss.backward()
            total += float(loss.detach())
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        since_eval.append(dist.sum([total])[0] / dist.world)
        reporter.update(step, since_eval[-1], global_batch * cfg.tokens_per_block)
        out_of_time = cfg.max_minutes is not None and elapsed + (time.time() - t0) >= cfg.max_minutes * 60
        out_of_time = dist.any(out_of_time)
        last = step == cfg.steps or out_of_time
        if step % cfg.eval_every == 0 or last:
            evaluate(step, sum(since_eval) / len(since_eval))
            since_eval = []
        if step % cfg.checkpoint_every == 0 or last:
            checkpoint()
        on_step(step)
        if out_of_time and step < cfg.steps:
            stopped = "time"
            log(f"{label}: time budget of {cfg.max_minutes} min reached at step {step}/{cfg.steps}; keeping the best weights (step {best['step']})")
            break
    if best["state"] is None:  # resumed after the last step: nothing left to do
        best["state"] = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    return LoopResult(best_state=best["state"], history=history, best_step=best["step"], best_eval=best["eval"],
                      steps_done=step, stopped=stopped, resumed_from=resumed_from, elapsed_s=elapsed + (time.time() - t0))
