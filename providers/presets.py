"""What we know about each named provider, so a config can just say `name: groq`.

Fields given explicitly in the config override the preset. `price_prefix` is the
provider's prefix in litellm's model cost map.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Preset:
    base_url: str
    api_key_env: str | None
    price_prefix: str
    quirks: tuple[str, ...] = ()
    self_hosted: bool = False
    kind: str = "openai"
    responses_api: bool = False  # serves POST /responses (the Responses API) natively


PRESETS: dict[str, Preset] = {
    "openai": Preset("https://api.openai.com/v1", "OPENAI_API_KEY", "openai", responses_api=True),
    "groq": Preset("https://api.groq.com/openai/v1", "GROQ_API_KEY", "groq", quirks=("groq",)),
    "together": Preset("https://api.together.xyz/v1", "TOGETHER_API_KEY", "together_ai"),
    "perplexity": Preset(
        "https://api.perplexity.ai", "PERPLEXITY_API_KEY", "perplexity", quirks=("perplexity",)
    ),
    "vllm": Preset(
        "http://localhost:8000/v1", "VLLM_API_KEY", "hosted_vllm", quirks=("vllm",), self_hosted=True
    ),
    # Not OpenAI-compatible: served through the litellm adapter.
    "anthropic": Preset("https://api.anthropic.com", "ANTHROPIC_API_KEY", "anthropic", kind="litellm"),
    "gemini": Preset("https://generativelanguage.googleapis.com", "GEMINI_API_KEY", "gemini", kind="litellm"),
    "bedrock": Preset("", None, "bedrock", kind="litellm"),
}
