"""A small CPU training loop for ``lora`` (and, in the benchmark, a full fine-tune of the same model and data).

It trains whatever parameters have ``requires_grad``: AdamW, warmup then linear/cosine/constant learning rate,
gradient accumulation, gradient clipping, held-out eval loss, checkpoints that resume exactly (trainable weights
+ optimizer + scheduler + RNG + step; batches are a pure function of seed and step), a wall-clock limit.

The loss is the mean cross-entropy over every target token of one optimizer step (all its micro-batches), so
gradient accumulation gives the same update as one big batch. Logits are computed only at the positions that
predict a target (``logits_to_keep``): with loss on short answers this avoids most of the vocabulary-wide
logits, the biggest activation of a small model.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError
from kogata.methods.lora.data import IGNORE, BatchSchedule, Example, collate

Log = Callable[[str], None]


@dataclass
class TrainSettings:
    steps: int
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | linear | constant (after warmup)
    max_grad_norm: float = 1.0
    eval_every: int = 0  # 0: eval only at the start and the end
    log_every: int = 0  # 0: about ten log lines per run
    save_every: int = 0  # 0: a checkpoint only at the end (or when max_minutes stops the run)
    max_minutes: float = 0.0  # 0: no limit
    seed: int = 0


@dataclass
class TrainResult:
    steps_done: int
    stopped: str  # "completed" | "max_minutes" | "already-complete"
    resumed_from: int
    train_loss_first: float | None = None
    train_loss_last: float | None = None
    eval_loss_start: float | None = None
    eval_loss_end: float | None = None
    eval_history: list[tuple[int, float]] = field(default_factory=list)
    tokens_seen: int = 0
    train_s: float = 0.0
    tokens_per_s: float = 0.0


# --------------------------------------------------------------------------------------------- loss
def batch_loss_sum(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """(sum of target-token cross-entropies, number of target tokens) for one padded batch."""
    import torch
    import torch.nn.functional as F

    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = (targets != IGNORE).any(dim=0).nonzero().squeeze(1)  # positions predicting some row's target
    if keep.numel() == 0:
        return torch.zeros((), requires_grad=False), 0
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep, use_cache=False)
    logits = out.logits
    if logits.shape[1] != keep.numel():  # a model that ignores logits_to_keep
        logits = logits[:, keep]
    tgt = targets[:, keep]
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=IGNORE, reduction="sum")
    return loss, int((tgt != IGNORE).sum())


def eval_loss(model: Any, examples: list[Example], batch_size: int, pad_id: int) -> float | None:
    """Mean per-target-token loss on ``examples`` (eval mode, no gradients)."""
    import torch

    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            loss, n = batch_loss_sum(model, collate(examples[i : i + batch_size], pad_id))
            total += float(loss)
            count += n
    model.train(was_training)
    return total / count if count else None


# --------------------------------------------------------------------------------------------- schedule
def lr_factor(step: int, s: TrainSettings) -> float:
    if s.warmup_steps and step < s.warmup_steps:
        return (step + 1) / (s.warmup_steps + 1)
    if s.schedule == "constant":
        return 1.0
    span = max(1, s.steps - s.warmup_steps)
    progress = min(1.0, (step - s.warmup_steps) / span)
    if s.schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------------------------- checkpoints
class Checkpoint:
    """``<dir>/latest/``: trainable weights (safetensors), optimizer + scheduler + RNG (``torch.save``, read back
    with ``weights_only=True``) and ``state.json`` (step, signature). Replaced atomically on every save."""

    def __init__(self, folder: Path, signature: str):
        self.folder = Path(folder)
        self.signature = signature

    @property
    def latest(self) -> Path:
        return self.folder / "latest"

    def exists(self) -> bool:
        return (self.latest / "state.json").is_file()

    def save(self, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> None:
        import torch
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        weights = {n: p.detach().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}
        save_file(weights, str(tmp / "trainable.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()}, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "signature": self.signature}, indent=2))
        old = self.folder / f"old-{os.getpid()}"
        if self.latest.exists():
            os.replace(self.latest, old)
        os.replace(tmp, self.latest)
        shutil.rmtree(old, ignore_errors=True)

    def load(self, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
        import torch
        from safetensors.torch import load_file

        state = json.loads((self.latest / "state.json").read_text())
        if state.get("signature") != self.signature:
            raise KogataError(
                f"the checkpoint in {self.latest} was made with another base model, data or training config",
                "resume with the same settings, set resume=false to start over, or give another checkpoint_dir",
            )
        weights = load_file(str(self.latest / "trainable.safetensors"))
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        blob = torch.load(self.latest / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
        torch.set_rng_state(blob["rng"])
        return state


# --------------------------------------------------------------------------------------------- the loop
def train(
    model: Any,
    train_set: list[Example],
    eval_set: list[Example],
    s: TrainSettings,
    *,
    pad_id: int,
    log: Log = print,
    advance: Callable[[float], None] = lambda n=1: None,
    checkpoint: Checkpoint | None = None,
    resume: bool = False,
    what: str = "lora",
) -> TrainResult:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise KogataError("nothing to train: no parameter requires gradients", "this is a bug; please report it")
    optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, s))
    schedule = BatchSchedule(len(train_set), s.batch_size, s.seed)
    torch.manual_seed(s.seed + 1)  # dropout masks
    start, tokens_seen, history, first = 0, 0, [], None
    if checkpoint is not None and resume and checkpoint.exists():
        state = checkpoint.load(model, optimizer, scheduler)
        start, tokens_seen, first = int(state["step"]), int(state.get("tokens_seen", 0)), state.get("train_loss_first")
        history = [tuple(x) for x in state.get("eval_history", [])]
        log(f"{what}: resuming from step {start} ({checkpoint.latest})")
    elif checkpoint is not None and resume:
        log(f"{what}: resume=true but no checkpoint in {checkpoint.folder}; starting at step 0")
    result = TrainResult(steps_done=start, stopped="completed", resumed_from=start, train_loss_first=first, tokens_seen=tokens_seen)
    if start >= s.steps:
        result.stopped = "already-complete"
        result.eval_loss_end = eval_loss(model, eval_set, s.batch_size, pad_id)
        return result
    model.train()
    result.eval_loss_start = eval_loss(model, eval_set, s.batch_size, pad_id)
    if result.eval_loss_start is not None and start == 0:
        history.append((0, result.eval_loss_start))
    log_every = s.log_every or max(1, s.steps // 10)
    advance(start)
    started = time.perf_counter()
    session_tokens = 0
    step = start
    for step in range(start + 1, s.steps + 1):
        optimizer.zero_grad(set_to_none=True)
        micro = [collate([train_set[i] for i in schedule.indices((step - 1) * s.grad_accum + m)], pad_id) for m in range(s.grad_accum)]
        n_targets = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in micro)
        total = 0.0
        for batch in micro:
            loss_sum, _ = batch_loss_sum(model, batch)
            (loss_sum / max(1, n_targets)).backward()
            total += float(loss_sum.detach())
            session_tokens += int(batch["attention_mask"].sum())
        loss = total / max(1, n_targets)
        if not math.isfinite(loss):
            raise KogataError(f"{what}: the training loss became {loss} at step {step}", "lower lr (e.g. lr=5e-5) or check the data")
        if s.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
        lr_used = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        advance(1)
        if result.train_loss_first is None:
            result.train_loss_first = loss
        result.train_loss_last = loss
        elapsed = time.perf_counter() - started
        done_here = step - start
        ev = None
        if s.eval_every and step % s.eval_every == 0 and step < s.steps:
            ev = eval_loss(model, eval_set, s.batch_size, pad_id)
            if ev is not None:
                history.append((step, ev))
        if step % log_every == 0 or step == s.steps or ev is not None:
            eta = elapsed / done_here * (s.steps - step)
            log(
                f"{what}: step {step}/{s.steps} loss {loss:.4f}" + (f" eval {ev:.4f}" if ev is not None else "")
                + f" lr {lr_used:.2e} epoch {schedule.epoch_of(step * s.grad_accum):.2f}"
                + f" {session_tokens / elapsed:.0f} tok/s ETA {_minutes(eta)}"
            )
        out_of_time = s.max_minutes and elapsed > s.max_minutes * 60 and step < s.steps
        result.steps_done = step
        if checkpoint is not None and ((s.save_every and step % s.save_every == 0) or step == s.steps or out_of_time):
            checkpoint.save(model, optimizer, scheduler, {
                "step": step, "tokens_seen": tokens_seen + session_tokens, "train_loss_first": result.train_loss_first,
                "eval_history": history, "settings": asdict(s),
            })
        if out_of_time:
            result.stopped = "max_minutes"
            log(f"{what}: stopping at step {step}/{s.steps}: max_minutes={s.max_minutes} reached" + (" (checkpoint saved; resume=true continues)" if checkpoint else ""))
            break
    result.train_s = time.perf_counter() - started
    result.tokens_seen = tokens_seen + session_tokens
    result.tokens_per_s = session_tokens / result.train_s if result.train_s else 0.0
    result.eval_loss_end = eval_loss(model, eval_set, s.batch_size, pad_id)
    if result.eval_loss_end is not None:
        history.append((result.steps_done, result.eval_loss_end))
    result.eval_history = history
    model.eval()
    return result


def _minutes(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"
