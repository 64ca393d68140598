"""``lora`` (hf model → LoRA adapter artifact) and ``merge`` (adapter + its base → plain hf model).

``lora`` trains a peft LoRA adapter on your data (see :mod:`.lora_data` for the record formats and the loss on
answers only, :mod:`.lora_train` for the loop). The adapter artifact holds ``adapter_model.safetensors`` and
``adapter_config.json`` (peft's files; ``base_model_name_or_path`` is the base artifact id) plus
``kogata_adapter.json`` (base artifact id and name, rank, alpha, resolved target modules, prompt format); its
manifest says ``kind: lora-adapter``. Checkpoints go to ``checkpoint_dir`` (default
``$KOGATA_HOME/checkpoints/lora-<base id>-<signature>``); ``resume=true`` continues from the latest one.

``merge`` folds the adapter into the base weights (``merge_and_unload``) and writes a plain safetensors folder
with the base's tokenizer: it then goes through ``export-gguf`` and ``quantize`` like any model. Its input is
either the adapter artifact (base = the one recorded in ``kogata_adapter.json``, or ``base=`` which must be that
same artifact) or a model artifact with ``adapter=<adapter artifact>`` (which must have been trained on it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from kogata.artifacts.artifact import Artifact
from kogata.artifacts.markers import ADAPTER_KIND, ADAPTER_META, QUANT_MARKER
from kogata.artifacts.store import Store
from kogata.core.errors import KogataError
from kogata.methods.registry import MethodContext, data_fingerprint, new_step, register_method
from kogata.methods.search_space import SearchSpace, enabled, params_of

INIT = {"default": True, "gaussian": "gaussian", "random": False}
# fields that do not change the training trajectory (a checkpoint made under other values still fits)
_NOT_IN_SIGNATURE = {"steps", "resume", "max_minutes", "save_every", "eval_every", "log_every", "checkpoint_dir"}


@dataclass
class LoraMethodConfig:
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])  # module names, or all-linear
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    init: Literal["default", "gaussian", "random"] = "default"  # random: lora_B random too (tests)
    steps: int = 100  # optimizer steps
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    max_length: int = 512  # tokens per example (or per packed block)
    packing: bool = False
    gradient_checkpointing: bool = False  # recompute activations in backward: much less memory, ~30% slower
    loss_on: Literal["answers", "all"] = "answers"
    eval_fraction: float = 0.1  # held out from --data for the eval loss
    eval_every: int = 0  # 0: eval at the start and the end only
    log_every: int = 0
    save_every: int = 50  # checkpoint every N steps (and at the end); 0: only at the end
    checkpoint_dir: str | None = None
    resume: bool = False
    max_minutes: float = 0.0  # stop (with a checkpoint) after this long; 0: no limit
    system_prompt: str | None = None
    use_chat_template: bool = True
    plain_prompt: bool = False  # the record's prompt is the whole model input (base models sent a plain prompt)
    prompt_field: list[str] = field(default_factory=list)  # for records with other field names
    answer_field: str | None = None

    def validate(self) -> None:
        checks = [
            (self.rank >= 1, "rank must be at least 1", "e.g. rank=8"),
            (self.alpha > 0, "alpha must be positive", "e.g. alpha=16 (scale = alpha/rank)"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)", "e.g. dropout=0.05"),
            (self.steps >= 1 and self.batch_size >= 1 and self.grad_accum >= 1, "steps, batch_size and grad_accum must be at least 1", "e.g. steps=100 batch_size=4"),
            (self.lr > 0, "lr must be positive", "e.g. lr=2e-4"),
            (self.max_length >= 8, "max_length must be at least 8", "e.g. max_length=512"),
            (0 <= self.eval_fraction < 1, "eval_fraction must be in [0, 1)", "e.g. eval_fraction=0.1, or 0 for no eval split"),
            (self.max_minutes >= 0 and self.warmup_steps >= 0, "max_minutes and warmup_steps cannot be negative", "use 0 for none"),
            (bool(self.target_modules), "target_modules is empty", "use target_modules=all-linear or name modules, e.g. q_proj,v_proj"),
            (not (self.plain_prompt and self.system_prompt), "system_prompt has no effect with plain_prompt (the prompt is the whole input)",
             "put the instructions in the prompts, or drop plain_prompt"),
        ]
        for ok, message, hint in checks:
            if not ok:
                raise KogataError(f"lora: {message}", hint)


@dataclass
class MergeConfig:
    adapter: str | None = None  # when the input is a model: the adapter artifact to fold into it
    base: str | None = None  # when the input is an adapter: its base (default: the one it was trained on)


# ---------------------------------------------------------------------------------------------- lora
# `kogata optimize` proposes "LoRA + <weight type>" when the project gives data: train, merge, then quantize
LORA_SPACE = SearchSpace(
    key="lora", family="lora", effort=3, build_s=120,
    help="LoRA fine-tuning on instruction data: {enabled: auto|true|false, data: FILE, max_minutes: 10}",
    default={"enabled": "auto"},
    values=lambda section, ctx: [params_of(section)] if enabled(section, ctx) else [],
    steps=lambda params, ctx: [{"method": "lora", "params": params}, {"method": "merge", "params": {}}],
    label=lambda params: "LoRA",
    extra_minutes=lambda params: float(params.get("max_minutes", 10)),
)


@register_method(
    "lora",
    LoraMethodConfig,
    input_formats=("hf",),
    summary="train a LoRA adapter on your data (chat-formatted, loss on answers) → lora-adapter artifact",
    uses_data=True,
    search_space=LORA_SPACE,
)
def lora(artifact: Artifact, cfg: LoraMethodConfig, ctx: MethodContext) -> Artifact:
    import torch
    from peft import LoraConfig, get_peft_model

    from kogata.artifacts.load import load_torch
    from kogata.methods.lora.train import Checkpoint, TrainSettings, train

    _check_trainable_base(artifact)
    started = time.time()
    model, tok = load_torch(artifact)
    targets = resolve_targets(model, cfg.target_modules, artifact)
    data = prepare_examples(tok, cfg, ctx.data, ctx.seed)
    fmt, train_set, eval_set, stats = data["formatter"], data["train"], data["eval"], data["stats"]
    unit = data["unit"]
    if stats["truncated_prompts"] or stats["truncated_answers"]:
        ctx.log(f"lora: {stats['truncated_prompts']} prompts and {stats['truncated_answers']} answers were cut to max_length={cfg.max_length}")
    if (artifact.path / QUANT_MARKER).exists():
        ctx.log("lora: the base is marked int8-dynamic; training uses its float weights (merge keeps the marker)")

    # transformers 5 renamed gradient_* to activation_* checkpointing; peft still calls the old names
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(ctx.seed)  # LoRA A (and B with init=random) initialisation
    peft_cfg = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        init_lora_weights=INIT[cfg.init],
        bias="none",
        task_type="CAUSAL_LM",
    )
    pm = get_peft_model(model, peft_cfg)
    trainable, total = pm.get_nb_trainable_parameters()
    ctx.log(f"lora: {trainable:,} trainable parameters ({100 * trainable / total:.2f}% of {total:,}); {len(train_set)} {unit}, {len(eval_set)} eval")

    signature = _signature(artifact, cfg, ctx)
    ckpt_dir = cfg.checkpoint_dir or str(ctx.store.home / "checkpoints" / f"lora-{artifact.id}-{signature[:12]}")
    settings = TrainSettings(
        steps=cfg.steps, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum, lr=cfg.lr, weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps, schedule=cfg.schedule, eval_every=cfg.eval_every, log_every=cfg.log_every,
        save_every=cfg.save_every, max_minutes=cfg.max_minutes, seed=ctx.seed,
    )
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    result = train(
        pm, train_set, eval_set, settings, pad_id=pad_id, log=ctx.log, advance=ctx.task("lora: training", cfg.steps),
        checkpoint=Checkpoint(ckpt_dir, signature), resume=cfg.resume,
    )
    resolved = sorted({n.rsplit(".", 1)[-1] for n in pm.peft_config["default"].target_modules})
    with ctx.store.stage() as st:
        pm.save_pretrained(str(st.dir))
        (st.dir / "README.md").unlink(missing_ok=True)
        conf_path = st.dir / "adapter_config.json"
        conf = json.loads(conf_path.read_text())
        conf["base_model_name_or_path"] = artifact.id  # not a local path: the id does not depend on where the store is
        conf_path.write_text(json.dumps(conf, indent=2, sort_keys=True))
        meta = {
            "version": 1,
            "adapter": "lora",
            "base_id": artifact.id,
            "base_name": artifact.name,
            "base_architecture": artifact.architecture,
            "rank": cfg.rank,
            "alpha": cfg.alpha,
            "target_modules": resolved,
            "trainable_params": trainable,
            "base_params": total - trainable,
            "prompt_format": {"chat_template": fmt.chat, "plain_prompt": cfg.plain_prompt, "system_prompt": cfg.system_prompt,
                              "loss_on": cfg.loss_on},  # fmt: skip
        }
        (st.dir / ADAPTER_META).write_text(json.dumps(meta, indent=2))
        metrics = {
            "trainable_params": trainable,
            "trainable_pct": round(100 * trainable / total, 4),
            "steps_done": result.steps_done,
            "stopped": result.stopped,
            "resumed_from": result.resumed_from,
            "train_loss_first": result.train_loss_first,
            "train_loss_last": result.train_loss_last,
            "eval_loss_start": result.eval_loss_start,
            "eval_loss_end": result.eval_loss_end,
            "eval_history": result.eval_history,
            "tokens_seen": result.tokens_seen,
            "tokens_per_s": round(result.tokens_per_s, 1),
            "train_s": round(result.train_s, 1),
            "train_examples": len(train_set),
            "eval_examples": len(eval_set),
            "chat_template": fmt.chat,
            "checkpoint": str(ckpt_dir),
            **{f"data_{k}": v for k, v in stats.items()},
        }
        note = None
        if result.stopped == "max_minutes":
            note = f"stopped by max_minutes after {result.steps_done}/{cfg.steps} steps; resume=true continues from the checkpoint"
        step = new_step("lora", cfg, ctx, started, metrics=metrics, note=note)
        return st.commit(
            format="hf",
            name=ctx.artifact_name(f"{artifact.name}.lora"),
            parent=artifact,
            step=step,
            params=trainable,
            architecture=artifact.architecture,
            kind=ADAPTER_KIND,
        )


def prepare_examples(tok: Any, cfg: LoraMethodConfig, paths: list[Any], seed: int) -> dict[str, Any]:
    """Read, split (eval_fraction, seeded), format and tokenize the data; pack the training part if asked.
    Raises when the training part is smaller than one batch."""
    import kogata.methods.lora.data as ld

    fmt = ld.Formatter(tok, system_prompt=cfg.system_prompt, use_chat_template=cfg.use_chat_template, plain_prompt=cfg.plain_prompt)
    records = ld.read_records(paths, prompt_fields=cfg.prompt_field, answer_field=cfg.answer_field)
    train_rec, eval_rec = ld.split_eval(records, cfg.eval_fraction, seed)
    train_set, stats = ld.tokenize_records(train_rec, fmt, max_length=cfg.max_length, loss_on=cfg.loss_on)
    eval_set, _ = ld.tokenize_records(eval_rec, fmt, max_length=cfg.max_length, loss_on=cfg.loss_on)
    if cfg.packing:
        train_set = ld.pack(train_set, cfg.max_length)
    train_set = [e for e in train_set if e.n_targets > 0]
    unit = "packed blocks" if cfg.packing else "training examples"
    if len(train_set) < cfg.batch_size:
        raise KogataError(
            f"lora: {len(train_set)} {unit} (from {len(records)} records, {len(eval_rec)} held out for eval) is fewer than one batch of {cfg.batch_size}",
            "add data, lower batch_size, or lower eval_fraction",
        )
    return {"formatter": fmt, "train": train_set, "eval": eval_set, "stats": stats, "unit": unit}


def _check_trainable_base(artifact: Artifact) -> None:
    if artifact.kind == ADAPTER_KIND:
        raise KogataError(
            f"{artifact.name} ({artifact.id}) is already a LoRA adapter",
            f"merge it first (`kogata compress {artifact.name} --method merge`), then train a new adapter on the merged model",
        )
    if artifact.kind != "causal-lm":
        raise KogataError(f"lora trains causal language models, but {artifact.name} is a {artifact.kind}", "pick a causal LM artifact")


def resolve_targets(model: Any, wanted: list[str], artifact: Artifact) -> str | list[str]:
    """``"all-linear"`` or the requested module names, each of which must name (the end of) a linear layer."""
    import torch

    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    short = sorted(dict.fromkeys(n.rsplit(".", 1)[-1] for n in linear), key=lambda s: s == "lm_head")  # model order
    wanted = [w.strip() for w in wanted if w.strip()]
    if [w.lower() for w in wanted] == ["all-linear"]:
        return "all-linear"
    if any(w.lower() == "all-linear" for w in wanted):
        raise KogataError("lora: all-linear cannot be combined with module names", "use target_modules=all-linear alone, or list modules")
    missing = [w for w in wanted if not any(n == w or n.endswith("." + w) for n in linear)]
    if missing:
        raise KogataError(
            f"lora: target module(s) {', '.join(missing)} not found among the linear layers of {artifact.name}",
            f"linear modules that exist: {', '.join(short)} (or target_modules=all-linear)",
        )
    if "lm_head" in wanted and getattr(model.config, "tie_word_embeddings", False):
        raise KogataError(f"lora: lm_head shares its weights with embed_tokens in {artifact.name}", "leave lm_head out of target_modules")
    return wanted


def _signature(artifact: Artifact, cfg: LoraMethodConfig, ctx: MethodContext) -> str:
    from kogata.methods.registry import config_dict

    trajectory = {k: v for k, v in config_dict(cfg).items() if k not in _NOT_IN_SIGNATURE}
    blob = json.dumps({"base": artifact.id, "data": data_fingerprint(ctx.data), "seed": ctx.seed, "cfg": trajectory}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- merge
def adapter_meta(adapter: Artifact) -> dict[str, Any]:
    path = adapter.path / ADAPTER_META
    if adapter.kind != ADAPTER_KIND or not path.is_file():
        raise KogataError(
            f"{adapter.name} ({adapter.id}) is not a LoRA adapter artifact (kind {adapter.kind})",
            "make one with `kogata compress MODEL --method lora --data FILE`",
        )
    return json.loads(path.read_text(encoding="utf-8"))


def resolve_pair(store: Store, artifact: Artifact, *, adapter: str | None = None, base: str | None = None) -> tuple[Artifact, Artifact]:
    """(adapter, base) for ``artifact`` (an adapter, or a model given with ``adapter=``); the base must be
    the artifact the adapter was trained on."""
    if artifact.kind == ADAPTER_KIND:
        if adapter:
            raise KogataError(f"{artifact.name} is itself an adapter; adapter= is for applying one to a model", "drop adapter=")
        ad = artifact
        recorded = adapter_meta(ad)["base_id"]
        if base:
            b = store.get(base)
        else:
            b = store.find(recorded)
            if b is None:
                raise KogataError(
                    f"the base {adapter_meta(ad).get('base_name')} ({recorded}) of adapter {ad.name} ({ad.id}) is not in the store",
                    "import or re-create that base model, then merge again",
                )
    else:
        if not adapter:
            raise KogataError(
                f"merge needs a LoRA adapter, but {artifact.name} is a {artifact.kind} model",
                "run merge on the adapter artifact, or give adapter=<adapter artifact> to apply it to this model",
            )
        if base:
            raise KogataError("give either base= (input is an adapter) or adapter= (input is the model), not both", "drop base=")
        ad, b = store.get(adapter), artifact
        recorded = adapter_meta(ad)["base_id"]
    if b.id != recorded:
        raise KogataError(
            f"adapter {ad.name} ({ad.id}) was trained on base {adapter_meta(ad).get('base_name')} ({recorded}), "
            f"not on {b.name} ({b.id})",
            "apply an adapter only to the model it was trained on (train a new adapter for this model)",
        )
    return ad, b


def load_adapter_model(adapter: Artifact, base: Artifact) -> tuple[Any, Any]:
    """(peft model with the adapter on its base, tokenizer) in eval mode, float32."""
    from peft import PeftModel

    from kogata.artifacts.load import load_torch

    model, tok = load_torch(base)
    pm = PeftModel.from_pretrained(model, str(adapter.path), is_trainable=False)
    pm.eval()
    return pm, tok


PROBE = "Hello, how can I help you today? The warranty lasts one year; shipping takes three to five days."


@register_method(
    "merge",
    MergeConfig,
    input_formats=("hf",),
    summary="fold a LoRA adapter into its base model → plain hf model (then export-gguf / quantize)",
)
def merge(artifact: Artifact, cfg: MergeConfig, ctx: MethodContext) -> Artifact:
    import torch

    started = time.time()
    adapter, base = resolve_pair(ctx.store, artifact, adapter=cfg.adapter, base=cfg.base)
    pm, tok = load_adapter_model(adapter, base)
    advance = ctx.task("merge", 1)
    probe = torch.tensor([tok(PROBE).input_ids[:32]])
    with torch.no_grad():
        before = pm(input_ids=probe).logits
        merged = pm.merge_and_unload()
        after = merged(input_ids=probe).logits
    diff = float((before - after).abs().max())
    scale = float(before.abs().max())
    if diff > 1e-3 * max(1.0, scale):
        raise KogataError(f"merge self-check failed: logits moved by {diff:.3g} after merging", "this is a bug; please report it")
    with ctx.store.stage() as st:
        merged.save_pretrained(str(st.dir), safe_serialization=True)
        tok.save_pretrained(str(st.dir))
        if (base.path / QUANT_MARKER).exists():
            shutil.copyfile(base.path / QUANT_MARKER, st.dir / QUANT_MARKER)
        advance(1)
        meta = adapter_meta(adapter)
        step = new_step(
            "merge", cfg, ctx, started, source=adapter.id,
            metrics={"adapter_id": adapter.id, "base_id": base.id, "rank": meta["rank"], "alpha": meta["alpha"],
                     "target_modules": meta["target_modules"], "probe_max_logit_diff": diff},
        )
        return st.commit(
            format="hf",
            name=ctx.artifact_name(f"{adapter.name}.merged" if artifact.kind == ADAPTER_KIND else f"{base.name}+{adapter.name}"),
            parent=artifact,
            step=step,
            architecture=base.architecture,
        )


