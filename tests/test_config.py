"""Config validation names the bad field and its line; presets fill in what is omitted."""

from __future__ import annotations

import pytest

from gateway.config import DEMO_CONFIG_PATH, ConfigError, load_config, parse_config
from providers.ratelimit_headers import parse_duration_s, parse_rate_limit_headers, parse_retry_after_s


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "gw.yaml")
    return caught.value.problems


def test_unknown_field_reported_with_line():
    text = "providers:\n  - name: groq\n    base_ulr: http://x\nmodels: []\n"
    assert _problems(text) == ["gw.yaml:3: providers[0].base_ulr: Extra inputs are not permitted"]


def test_bad_value_reported_with_line_and_path():
    text = (
        "providers:\n  - name: groq\nmodels:\n  - name: m\n    deployments:\n"
        "      - provider: groq\n        model: x\n        first_byte_timeout_ms: -5\n"
    )
    (problem,) = _problems(text)
    assert problem.startswith("gw.yaml:8: models[0].deployments[0].first_byte_timeout_ms:")


def test_unknown_provider_reference_and_unknown_preset():
    text = (
        "providers:\n  - name: mystery\nmodels:\n  - name: m\n    deployments:\n"
        "      - provider: nobody\n        model: x\n"
    )
    problems = _problems(text)
    assert any(p.startswith("gw.yaml:2: providers[0]:") and "base_url" in p for p in problems)
    assert any(p.startswith("gw.yaml:6: models[0].deployments[0].provider:") for p in problems)


def test_yaml_syntax_error_has_line():
    (problem,) = _problems("providers:\n  - name: [unclosed\n")
    assert problem.startswith("gw.yaml:") and "not valid YAML" in problem


def test_demo_config_is_valid_and_simulated():
    config = load_config(DEMO_CONFIG_PATH)
    assert all(p.simulate for p in config.providers)
    assert {m.name for m in config.models} >= {"llama-3.1-8b", "twin"}


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2m59.56s", 179.56), ("7.66s", 7.66), ("20ms", 0.02), ("1h2m3s", 3723.0), ("30", 30.0), ("junk", None)],
)
def test_rate_limit_durations(text, seconds):
    assert parse_duration_s(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_rate_limit_headers_and_retry_after():
    info = parse_rate_limit_headers(
        {
            "x-ratelimit-limit-requests": "14400",
            "x-ratelimit-remaining-requests": "14370",
            "x-ratelimit-remaining-tokens": "5866",
            "x-ratelimit-reset-tokens": "7.66s",
            "retry-after": "3",
        }
    )
    assert (info.limit_requests, info.remaining_requests, info.remaining_tokens) == (14400, 14370, 5866)
    assert info.reset_tokens_s == pytest.approx(7.66) and info.retry_after_s == 3.0
    assert parse_retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
