"""Counting tokens when an upstream reports no usage.

litellm's `token_counter` would do it, but importing litellm costs ~3 s of CPU under
the GIL and ~170 MB; done lazily inside a running gateway, that import stalls the
event loop (a client's disconnect took 136 ms instead of ~2 ms to reach the upstream
while it ran). For the models we route, offline, litellm's counter ends up in
tiktoken's `cl100k_base`, read from the encoding files bundled inside the litellm
package, plus OpenAI's per-message overhead. This module does exactly that, without
importing litellm: the files are found through the package's spec, and the encoding
is loaded once (about 0.1 s) when the gateway starts.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

_TOKENS_PER_MESSAGE = 3  # OpenAI's chat format: <|start|>{role}\n{content}<|end|>
_REPLY_PRIMING = 3


def _bundled_encodings_dir() -> str | None:
    spec = importlib.util.find_spec("litellm")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    return str(path) if path.is_dir() else None


class TokenCounter:
    """cl100k_base token counts for prompts and completions."""

    def __init__(self) -> None:
        bundled = _bundled_encodings_dir()
        if bundled and "TIKTOKEN_CACHE_DIR" not in os.environ:
            os.environ["TIKTOKEN_CACHE_DIR"] = bundled  # tiktoken reads the cache dir from here only
        import tiktoken

        self._encoding = tiktoken.get_encoding("cl100k_base")

    def text(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text)) if text else 0

    def messages(self, messages: list[Any]) -> int:
        total = _REPLY_PRIMING
        for message in messages:
            if not isinstance(message, dict):
                continue
            total += _TOKENS_PER_MESSAGE
            for key in ("role", "name", "content"):
                value = message.get(key)
                if isinstance(value, str):
                    total += self.text(value)
                elif isinstance(value, list):  # content parts: their text; images are not text
                    total += sum(self.text(p.get("text", "")) for p in value if isinstance(p, dict))
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    total += self.text(str(function.get("name") or ""))
                    total += self.text(str(function.get("arguments") or ""))
        return total
