"""Token estimates agree with litellm's token counter, without importing litellm at run time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from providers.token_count import TokenCounter

SAMPLES = [
    [{"role": "user", "content": "Tell me a story about a brave knight and a dragon."}],
    [
        {"role": "system", "content": "You write in the voice of a 19th-century naturalist."},
        {"role": "user", "content": "Describe a heron. Ünïcode, emoji 🦩 and code `x = 1` included."},
        {"role": "assistant", "content": "The heron stands"},
    ],
]
COMPLETION = "Once upon a time, in a kingdom by the sea, there lived a knight."


def test_loading_the_counter_does_not_import_litellm():
    code = "import sys; from providers.token_count import TokenCounter; TokenCounter(); print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("messages", SAMPLES)
def test_counts_match_litellm(messages):
    import litellm

    litellm.disable_hf_tokenizer_download = True  # offline, litellm falls back to the same encoding
    counter = TokenCounter()
    model = "llama-3.1-8b-instant"
    assert counter.messages(messages) == litellm.token_counter(model=model, messages=messages)
    assert counter.text(COMPLETION) == litellm.token_counter(
        model=model, text=COMPLETION, count_response_tokens=True
    )
