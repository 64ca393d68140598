"""The distillation objective: the student as one module for DDP (:class:`StudentForward`: full logits, or
logits at the teacher's top-k ids only) and the loss ``alpha·CE + (1−alpha)·T²·KL_topk (+ hidden alignment)``
(:class:`Objective`, with :func:`topk_divergence`: forward/reverse KL or JSD over the teacher's top-k)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from kogata.methods.distill.method import DistillConfig


class StudentForward(torch.nn.Module):
    """The student as one module for DDP: full logits, or logits for given token ids only, plus block outputs."""

    def __init__(self, model: Any, capture: bool):
        super().__init__()
        self.model = model
        self.captured: list[torch.Tensor] = []
        self._hooks = [layer.register_forward_hook(self._keep) for layer in model.model.layers] if capture else []

    def _keep(self, module: Any, args: Any, output: Any) -> None:
        self.captured.append(output[0] if isinstance(output, tuple) else output)

    def remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()

    def forward(self, input_ids: torch.Tensor, topk_idx: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self.captured = []
        if topk_idx is None:
            return self.model(input_ids=input_ids, use_cache=False).logits, self.captured
        h = self.model.model(input_ids=input_ids, use_cache=False).last_hidden_state
        w = self.model.get_output_embeddings().weight
        logits = torch.einsum("bld,blkd->blk", h, w[topk_idx])
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits, self.captured


class Objective:
    """``alpha·CE + (1−alpha)·T²·KL_topk (+ hidden_weight·hidden alignment)`` for one batch of blocks."""

    def __init__(self, student: Any, teacher: Any, cfg: DistillConfig, teacher_layers: list[int] | None):
        self.cfg, self.teacher = cfg, teacher
        self.targets: list[int] = []
        self.t_captured: list[torch.Tensor] = []
        if teacher is not None:
            n_t = len(teacher.model.layers)
            kept = teacher_layers or list(range(len(student.model.layers)))
            self.targets = [kept[i + 1] - 1 for i in range(len(kept) - 1)] + [n_t - 1]
            for layer in teacher.model.layers:
                layer.register_forward_hook(lambda m, a, o: self.t_captured.append(o[0] if isinstance(o, tuple) else o))

    def loss(self, model: torch.nn.Module, x: torch.Tensor, teacher_topk: tuple[torch.Tensor, torch.Tensor] | None,
             *, train: bool) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        gather = train and cfg.alpha == 0 and teacher_topk is not None and not cfg.kl_rest
        logits, hidden = model(x, teacher_topk[1] if gather else None)
        parts: dict[str, float] = {}
        total = torch.zeros((), device=x.device)
        if not gather:
            ce = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten())
            parts["ce"] = float(ce.detach())
            if cfg.alpha > 0:
                total = total + cfg.alpha * ce
        if teacher_topk is not None:
            t_logp, t_idx = teacher_topk
            s_k = logits.float() if gather else logits.float().gather(-1, t_idx)
            lse = torch.logsumexp(logits.float(), dim=-1) if cfg.kl_rest else None
            kl = topk_divergence(t_logp.float(), s_k, cfg.temperature, cfg.kl, lse)
            parts["kl"] = float(kl.detach())
            total = total + (1 - cfg.alpha) * cfg.temperature**2 * kl
        if self.teacher is not None and cfg.hidden_weight > 0:
            self.t_captured.clear()
            with torch.no_grad():
                self.teacher.model(input_ids=x, use_cache=False)
            rel = [((s.float() - self.t_captured[j].float()) ** 2).sum() / (self.t_captured[j].float() ** 2).sum().clamp_min(1e-12)
                   for s, j in zip(hidden, self.targets)]
            hid = torch.stack(rel).mean()
            parts["hidden"] = float(hid.detach())
            total = total + cfg.hidden_weight * hid
        return total, parts


def topk_divergence(t_logp: torch.Tensor, s_logits_k: torch.Tensor, temperature: float, kind: str,
                    s_logsumexp: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over positions of the divergence between teacher and student over the teacher's top-k ids: renormalised
    over those ids, or (given the student's full-vocabulary log-sum-exp; temperature 1) over the k ids plus one
    "rest of the vocabulary" bucket, which also holds the student's mass outside the top-k to the teacher's."""
    if s_logsumexp is None:
        log_p = torch.log_softmax(t_logp / temperature, dim=-1)
        log_q = torch.log_softmax(s_logits_k / temperature, dim=-1)
    else:
        log_q = s_logits_k - s_logsumexp.unsqueeze(-1)
        log_p, log_q = _with_rest(t_logp), _with_rest(log_q)
    if kind == "forward":
        d = (log_p.exp() * (log_p - log_q)).sum(-1)
    elif kind == "reverse":
        d = (log_q.exp() * (log_q - log_p)).sum(-1)
    else:
        log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
        d = 0.5 * (log_p.exp() * (log_p - log_m)).sum(-1) + 0.5 * (log_q.exp() * (log_q - log_m)).sum(-1)
    return d.mean()


def _with_rest(logp_k: torch.Tensor) -> torch.Tensor:
    """Append log(1 − Σ p) of the ids outside the top-k (floored at 1e-6: cached fp16 values can sum just above 1)."""
    rest = torch.log1p(-torch.logsumexp(logp_k, dim=-1, keepdim=True).exp().clamp(max=1 - 1e-6))
    return torch.cat([logp_k, rest], dim=-1)
