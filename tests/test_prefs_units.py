"""Provider preferences on their own: every field parsed, every bad input named, layering, echo.

A client reads the 400's `param` and message to fix its request, so both are compared
exactly; `as_dict` is what `/v1/routing/plan` echoes back, so its shape is compared too.
"""

from __future__ import annotations

import pytest

from router_policies.prefs import (
    NO_PREFS,
    QUANTIZATIONS,
    Cutoffs,
    MaxPrice,
    PrefsError,
    ProviderPrefs,
    parse_prefs,
    split_suffix,
)

FULL = {
    "order": ["Groq", "together"],
    "allow_fallbacks": False,
    "only": ["GROQ"],
    "ignore": ["Perplexity"],
    "sort": {"by": "latency", "partition": "none"},
    "max_price": {"prompt": 1, "completion": 2.5},
    "data_collection": "deny",
    "require_parameters": True,
    "preferred_max_latency": {"p50": 0.5, "p99": 2},
    "preferred_min_throughput": 40,
    "quantizations": ["FP8", "bf16"],
    "zdr": True,
}


def test_every_field_parses_to_its_typed_value():
    prefs = parse_prefs(FULL)
    assert prefs == ProviderPrefs(
        order=("groq", "together"),
        allow_fallbacks=False,
        only=("groq",),
        ignore=("perplexity",),
        sort="latency",
        max_price=MaxPrice(prompt=1.0, completion=2.5),
        data_collection="deny",
        require_parameters=True,
        preferred_max_latency=Cutoffs(p50=0.5, p99=2.0),
        preferred_min_throughput=Cutoffs(p50=40.0),
        partition="none",
        quantizations=("fp8", "bf16"),
        zdr=True,
    )
    assert isinstance(prefs.max_price.prompt, float)  # type: ignore[union-attr]
    assert isinstance(prefs.preferred_max_latency.p99, float)  # type: ignore[union-attr]


def test_nothing_said_is_no_prefs_and_each_absent_field_stays_none():
    assert parse_prefs(None) is NO_PREFS
    assert parse_prefs({}) == NO_PREFS
    only_sort = parse_prefs({"sort": "price"})
    assert only_sort == ProviderPrefs(sort="price")
    assert parse_prefs({"sort": {"by": "throughput"}}) == ProviderPrefs(sort="throughput")
    assert parse_prefs({"data_collection": "allow"}).data_collection == "allow"
    assert parse_prefs({"allow_fallbacks": True, "zdr": False}) == ProviderPrefs(
        allow_fallbacks=True, zdr=False
    )
    assert parse_prefs({"max_price": {}}) == ProviderPrefs(max_price=MaxPrice())
    assert parse_prefs({"max_price": {"completion": 0}}).max_price == MaxPrice(completion=0.0)
    assert parse_prefs({"max_price": {"request": 1, "image": 2}}).max_price == MaxPrice()


def test_the_where_prefix_names_config_defaults_in_errors_and_parses_the_same():
    assert parse_prefs({"sort": "price"}, where="models[0].provider") == ProviderPrefs(sort="price")
    with pytest.raises(PrefsError) as err:
        parse_prefs({"sort": "cheap"}, where="defaults")
    assert err.value.param == "defaults.sort"


def _error(raw: object) -> PrefsError:
    with pytest.raises(PrefsError) as err:
        parse_prefs(raw)
    assert str(err.value) == err.value.message
    return err.value


@pytest.mark.parametrize(
    ("raw", "param", "message"),
    [
        ("groq", "provider", "provider must be an object"),
        (
            {"nope": 1, "also": 2},
            "provider",
            "provider has unknown fields ['also', 'nope']; known: ['order', 'allow_fallbacks', 'only', "
            "'ignore', 'sort', 'max_price', 'data_collection', 'require_parameters', "
            "'preferred_max_latency', 'preferred_min_throughput', 'quantizations', 'zdr']",
        ),
        ({"order": "groq"}, "provider.order", "provider.order must be a list of provider names"),
        ({"order": ["groq", ""]}, "provider.order", "provider.order must be a list of provider names"),
        ({"only": [1]}, "provider.only", "provider.only must be a list of provider names"),
        ({"ignore": "x"}, "provider.ignore", "provider.ignore must be a list of provider names"),
        (
            {"allow_fallbacks": "no"},
            "provider.allow_fallbacks",
            "provider.allow_fallbacks must be true or false",
        ),
        ({"zdr": 1}, "provider.zdr", "provider.zdr must be true or false"),
        (
            {"require_parameters": "yes"},
            "provider.require_parameters",
            "provider.require_parameters must be true or false",
        ),
        (
            {"sort": "cheapest"},
            "provider.sort",
            "provider.sort must be one of ['price', 'latency', 'throughput'] or "
            '{"by": ..., "partition": ...}',
        ),
        (
            {"sort": {"by": "price", "order": 1}},
            "provider.sort",
            "provider.sort has unknown fields ['order']; known: ['by', 'partition']",
        ),
        (
            {"sort": {"by": "fast"}},
            "provider.sort.by",
            "provider.sort.by must be one of ['price', 'latency', 'throughput']",
        ),
        (
            {"sort": {"by": "price", "partition": "all"}},
            "provider.sort.partition",
            "provider.sort.partition must be one of ['model', 'none']",
        ),
        (
            {"data_collection": "maybe"},
            "provider.data_collection",
            'provider.data_collection must be "allow" or "deny"',
        ),
        (
            {"max_price": 3},
            "provider.max_price",
            'provider.max_price must be an object like {"prompt": 1, "completion": 2}',
        ),
        (
            {"max_price": {"prompt": 1, "total": 2}},
            "provider.max_price",
            "provider.max_price has unknown fields ['total']",
        ),
        (
            {"max_price": {"prompt": -1}},
            "provider.max_price.prompt",
            "provider.max_price.prompt must be a non-negative number (USD per million tokens)",
        ),
        (
            {"max_price": {"completion": True}},
            "provider.max_price.completion",
            "provider.max_price.completion must be a non-negative number (USD per million tokens)",
        ),
        (
            {"max_price": {"completion": "1"}},
            "provider.max_price.completion",
            "provider.max_price.completion must be a non-negative number (USD per million tokens)",
        ),
        (
            {"preferred_max_latency": 0},
            "provider.preferred_max_latency",
            "provider.preferred_max_latency must be a positive number (seconds) or an object of p50/p75/p90/p99",
        ),
        (
            {"preferred_max_latency": {"p50": 1, "p95": 2}},
            "provider.preferred_max_latency",
            "provider.preferred_max_latency has unknown fields ['p95']; known: ['p50', 'p75', 'p90', 'p99']",
        ),
        (
            {"preferred_max_latency": {"p90": float("inf")}},
            "provider.preferred_max_latency.p90",
            "provider.preferred_max_latency.p90 must be a positive number (seconds) or an object of "
            "p50/p75/p90/p99",
        ),
        (
            {"preferred_min_throughput": True},
            "provider.preferred_min_throughput",
            "provider.preferred_min_throughput must be a positive number (tokens per second) or an object "
            "of p50/p75/p90/p99",
        ),
        (
            {"preferred_min_throughput": {"p75": -3}},
            "provider.preferred_min_throughput.p75",
            "provider.preferred_min_throughput.p75 must be a positive number (tokens per second) or an "
            "object of p50/p75/p90/p99",
        ),
        (
            {"quantizations": ["fp8", "q3"]},
            "provider.quantizations",
            f"provider.quantizations must be a list of quantization levels from {list(QUANTIZATIONS)}",
        ),
        (
            {"quantizations": "fp8"},
            "provider.quantizations",
            f"provider.quantizations must be a list of quantization levels from {list(QUANTIZATIONS)}",
        ),
    ],
)
def test_bad_input_names_the_field_and_says_what_to_send(raw, param, message):
    err = _error(raw)
    assert (err.param, err.message) == (param, message)


def test_price_bounds_zero_is_allowed_and_targets_must_be_strictly_positive():
    assert parse_prefs({"max_price": {"prompt": 0}}).max_price == MaxPrice(prompt=0.0)
    assert parse_prefs({"preferred_max_latency": 0.001}).preferred_max_latency == Cutoffs(p50=0.001)
    assert parse_prefs({"preferred_max_latency": {"p75": 3}}).preferred_max_latency == Cutoffs(p75=3.0)
    # An object with every cutoff null says nothing: no target at all.
    assert parse_prefs({"preferred_max_latency": {"p50": None}}).preferred_max_latency is None
    assert not parse_prefs({"preferred_max_latency": {"p50": None}}).has_targets


def test_cutoffs_items_in_percentile_order_skipping_unset():
    assert Cutoffs(p99=4, p50=1).items() == [("p50", 1), ("p99", 4)]
    assert Cutoffs(p75=2, p90=3).items() == [("p75", 2), ("p90", 3)]
    assert Cutoffs().items() == []


def test_has_targets_for_either_target():
    assert not ProviderPrefs().has_targets
    assert ProviderPrefs(preferred_max_latency=Cutoffs(p50=1)).has_targets
    assert ProviderPrefs(preferred_min_throughput=Cutoffs(p50=1)).has_targets


def test_merge_layers_field_by_field_the_override_winning():
    base = ProviderPrefs(sort="price", only=("a",), zdr=True)
    over = ProviderPrefs(sort="latency", zdr=False)
    merged = base.merge(over)
    assert merged == ProviderPrefs(sort="latency", only=("a",), zdr=False)
    assert base.merge(None) is base
    assert base.merge(NO_PREFS) is base
    assert NO_PREFS.merge(over) is over
    assert base.merge(ProviderPrefs(only=("a",))) == base
    same = ProviderPrefs(sort="price")
    assert base.merge(ProviderPrefs(partition=None)) is base
    assert same.merge(ProviderPrefs(sort="price")) == same


def test_as_dict_echoes_what_was_said_in_the_request_shape():
    # Names lowercased, a bare throughput target as its p50; everything else as sent.
    assert parse_prefs(FULL).as_dict() == {
        **FULL,
        "order": ["groq", "together"],
        "only": ["groq"],
        "ignore": ["perplexity"],
        "preferred_min_throughput": {"p50": 40.0},
        "quantizations": ["fp8", "bf16"],
    }
    assert ProviderPrefs(sort="price", max_price=MaxPrice(completion=3)).as_dict() == {
        "sort": "price",
        "max_price": {"completion": 3},
    }
    assert ProviderPrefs(max_price=MaxPrice(prompt=1)).as_dict() == {"max_price": {"prompt": 1}}
    assert NO_PREFS.as_dict() == {}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("llama:nitro", ("llama", ProviderPrefs(sort="throughput"))),
        ("org/llama:floor", ("org/llama", ProviderPrefs(sort="price"))),
        ("a:b:nitro", ("a:b", ProviderPrefs(sort="throughput"))),
        (":nitro", (":nitro", None)),
        ("llama:free", ("llama:free", None)),
        ("llama", ("llama", None)),
        ("nitro", ("nitro", None)),
    ],
)
def test_split_suffix(model, expected):
    assert split_suffix(model) == expected
