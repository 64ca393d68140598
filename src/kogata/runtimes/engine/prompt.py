"""From a :class:`GenerateRequest` to prompt token ids, the way the ``llamacpp`` runtime builds them.

* plain ``prompt``: lm-eval's ``tok_encode`` rule — the tokenizer's own special tokens (BOS) are added unless
  the text already starts with the BOS token's text; special-token text in the prompt is parsed.
* chat ``messages``: the GGUF's chat template rendered with jinja2 exactly as llama-cpp-python's
  ``Jinja2ChatFormatter`` does (``bos_token``/``eos_token`` as text, ``add_generation_prompt=True``), tokenized
  without adding BOS (the template writes its own); without a template, the plain ``User:/Assistant:``
  transcript of :func:`kogata.runtimes.scoring.render_plain_chat` with ``"\\nUser:"`` as an extra stop string.
"""

from __future__ import annotations

from typing import Any

from kogata.runtimes.base import GenerateRequest
from kogata.runtimes.scoring import PLAIN_CHAT_STOP, render_plain_chat


class PromptBuilder:
    def __init__(self, model: Any):
        self.model = model
        self.bos_text = model.token_text(model.bos) if model.bos >= 0 else ""
        template = model.chat_template()
        self._formatter = None
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._formatter = Jinja2ChatFormatter(
                template=template, eos_token=model.token_text(model.eos), bos_token=self.bos_text
            )

    @property
    def has_chat_template(self) -> bool:
        return self._formatter is not None

    def encode(self, text: str) -> list[int]:
        """``tok_encode``: add BOS (if the vocabulary does) unless the text already starts with it."""
        add = not (self.bos_text and text.startswith(self.bos_text))
        return self.model.tokenize(text, add_special=add)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        if self._formatter is None:
            return render_plain_chat(messages)
        return self._formatter(messages=messages).prompt

    def build(self, request: GenerateRequest) -> tuple[list[int], list[str]]:
        """Prompt token ids and the stop strings to honour (the request's plus the chat format's)."""
        stop = list(request.stop or [])
        if request.messages is None:
            return self.encode(request.prompt or ""), stop
        text = self.render_chat(request.messages)
        if self._formatter is None:
            return self.encode(text), stop + [PLAIN_CHAT_STOP]
        return self.model.tokenize(text, add_special=False), stop
