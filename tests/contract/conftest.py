"""Fixtures for the provider contract: the replay server, transport pools, adapters built as the gateway builds them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import ModuleType

import pytest

from gateway.config import ProviderConfig
from gateway.runtime import build_provider
from providers.litellm_adapter import LiteLLMAdapter
from providers.transport import TransportPool
from providers.types import Adapter
from tests.contract.recordings import (
    API_KEY,
    API_KEY_ENV,
    TRANSPORT_KINDS,
    AdapterFactory,
    AnthropicFactory,
    recording,
)
from tests.contract.replay import ReplayServer, Reply


@pytest.fixture(scope="session")
def replay() -> Iterator[ReplayServer]:
    server = ReplayServer().start()
    yield server
    server.stop()


@pytest.fixture(params=TRANSPORT_KINDS)
def transport_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def pool(transport_kind: str) -> AsyncIterator[TransportPool]:
    pool = TransportPool(transport_kind)
    yield pool
    await pool.aclose()


@pytest.fixture
def make_adapter(
    replay: ReplayServer, pool: TransportPool, monkeypatch: pytest.MonkeyPatch
) -> AdapterFactory:
    """Serve `reply` and build the provider's adapter exactly as `gateway.runtime` does.

    Returns the adapter and the replay URL to read back what it sent.
    """
    monkeypatch.setenv(API_KEY_ENV, API_KEY)

    def make(provider: str, reply: Reply) -> tuple[Adapter, str]:
        url = replay.url_for(reply)
        config = ProviderConfig(
            name=provider, base_url=url + recording(provider).base_path, api_key_env=API_KEY_ENV
        )
        return build_provider(config, pool, None).adapter, url

    return make


@pytest.fixture(scope="session")
def litellm() -> ModuleType:
    """Import litellm once (about 3 s); the adapter reuses the import."""
    import litellm as module

    return module


@pytest.fixture
def anthropic(litellm: ModuleType, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch) -> AnthropicFactory:
    """Serve `reply` to the `anthropic` preset's litellm adapter, built as `gateway.runtime` builds it."""
    monkeypatch.setenv(API_KEY_ENV, API_KEY)

    def make(reply: Reply, key: str = API_KEY) -> tuple[LiteLLMAdapter, str]:
        monkeypatch.setenv(API_KEY_ENV, key)
        url = replay.url_for(reply)
        config = ProviderConfig(name="anthropic", base_url=url, api_key_env=API_KEY_ENV)
        adapter = build_provider(config, TransportPool(), None).adapter
        assert isinstance(adapter, LiteLLMAdapter)
        return adapter, url

    return make
