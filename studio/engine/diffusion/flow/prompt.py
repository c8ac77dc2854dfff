"""A1111 prompt syntax on the flow families (FLUX, SD 3.5, Z-Image, Qwen-Image, FLUX.2).

Their text encoders (T5, an LLM; CLIP only for the pooled vector) are not given per-token
weights the way A1111 weights CLIP, so Studio does what Forge does with FLUX's T5: the text is
used without the syntax. Nothing is dropped silently:

- ``<lora:name:w>`` tags are applied as LoRAs and taken out of the text (as on SD);
- ``(word:1.2)``, ``[word]`` and ``BREAK`` are removed, the words kept, with a note;
- prompt editing and alternation (``[a:b:0.5]``, ``[a|b]``) switch the conditioning per step
  on SD only; here the prompt as it reads at the last step is used, with a note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from studio.core.prompt_syntax import extract_loras, has_schedule, plain_text, prompt_schedule


@dataclass(frozen=True)
class FlowPrompt:
    prompt: str
    negative: str
    loras: tuple  # the request's LoraSpecs plus one per <lora:> tag
    notes: tuple[str, ...] = ()

    def note(self, label: str) -> str:
        """The notes as one progress line naming the family."""
        return "; ".join(n.format(label=label) for n in self.notes)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _clean(text: str, steps: int, notes: list[str]) -> str:
    if has_schedule(text):
        text = prompt_schedule(text, max(1, steps))[-1][1]
        notes.append(
            "prompt editing is not applied on {label}: the prompt at the last step is used"
        )
    plain = plain_text(text)
    if plain != _squash(text):
        notes.append("prompt weights and BREAK are not applied on {label}: the words are kept")
    return plain


def flow_prompt(prompt: str, negative: str, loras: tuple, steps: int) -> FlowPrompt:
    """The prompt, negative prompt and LoRAs a flow job runs with. BadInput in one line for
    a ``<lora:>`` tag whose file isn't installed (before any model loads)."""
    from studio.engine.diffusion.shared.lora import prompt_loras

    text, ran = prompt_loras(prompt or "", tuple(loras))
    negative, _ = extract_loras(negative or "")  # A1111 activates networks of the prompt only
    notes: list[str] = []
    text = _clean(text, steps, notes)
    negative = _clean(negative, steps, notes)
    return FlowPrompt(text, negative, ran, tuple(dict.fromkeys(notes)))
