"""What replicas share through Redis besides samples: its wire format and the Lua that keeps it straight.

Pure encoding and the server-side scripts, kept apart from `redis_store.py` (which decides
when to send what) so each stays small and the formats can be tested without Redis.

Readings (an upstream's `x-ratelimit-*` state per deployment, a vLLM server's load per
provider) live in one hash each, field → "at|payload", and the newest reading wins: a
replica whose sync lags must not overwrite a fresher reading with its older one, so the
write is a compare-and-set on `at` in Lua (`NEWER`), atomic on the server. Times are
written with `repr` so they read back exactly: a replica must recognise its own opening
and its own reading as not newer than what it has.

The half-open probe and the vLLM scrape are each done by one replica at a time under a
lease (`SET NX PX`): `PROBE` decides, in one step on the server, whether this replica
probes, waits for another's probe, or learns that the deployment re-opened or closed;
`CLAIM` takes or renews a lease; `RELEASE` drops it only if it is still ours.
"""

from __future__ import annotations

import dataclasses

import orjson

from providers.types import RateLimitInfo
from router_policies.stats import RateLimitState, ServerLoad

# KEYS[1] hash; ARGV: field, at, payload, ttl_ms. Writes only if newer than what is there.
NEWER = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local at = tonumber(string.match(current, '^([^|]*)'))
  if at and at >= tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS[1] lease; ARGV: holder, ttl_ms. 1 if the holder has (or now takes) the lease, renewed.
CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS[1] lease; ARGV[1] holder.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: opening, closed marker, probe lease;
# ARGV: replica, local open_until, lease ttl_ms, keep a held lease (0/1), take a free one (0/1).
# An opening no later than ours is the one we wait out (its key may outlive it by a round trip).
# → {'open', record} a newer opening · {'closed', at} a probe succeeded after our opening
#   · {'probe', ''} this replica holds the lease · {'wait', ''} another replica probes.
# A holder that no longer needs the lease (keep = 0: no probe out and none sent for a
# whole lease) gives it up and, resting (take = 0), leaves it to a replica with traffic.
PROBE = """
local mine = tonumber(ARGV[2])
local opening = redis.call('GET', KEYS[1])
local opened_until = opening and tonumber(string.match(opening, '^([^|]*)'))
if opened_until and opened_until > mine then return {'open', opening} end
local closed = redis.call('GET', KEYS[2])
local closed_at = closed and tonumber(closed)
if closed_at and closed_at >= mine then return {'closed', closed} end
local holder = redis.call('GET', KEYS[3])
if holder == ARGV[1] then
  if ARGV[4] == '1' then
    redis.call('PEXPIRE', KEYS[3], ARGV[3])
    return {'probe', ''}
  end
  redis.call('DEL', KEYS[3])
  return {'wait', ''}
end
if holder or ARGV[5] ~= '1' then return {'wait', ''} end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[3])
return {'probe', ''}
"""

_LIMIT_FIELDS = tuple(f.name for f in dataclasses.fields(RateLimitInfo))


def encode_rate_limit(reading: RateLimitState) -> tuple[str, str]:
    """(at, payload) for `NEWER`."""
    info = reading.info
    return repr(reading.at), orjson.dumps([getattr(info, name) for name in _LIMIT_FIELDS]).decode()


def decode_rate_limit(value: str) -> RateLimitState | None:
    """A shared reading, or None if it is not one (a newer format, a damaged value)."""
    at, _, payload = value.partition("|")
    try:
        values = orjson.loads(payload)
        if not isinstance(values, list) or len(values) != len(_LIMIT_FIELDS):
            return None
        if not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values):
            return None
        return RateLimitState(RateLimitInfo(*values), float(at))
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None


def encode_load(load: ServerLoad) -> tuple[str, str]:
    return repr(load.at), f"{load.waiting:g}|{load.running:g}|{load.kv_cache_usage:g}"


def decode_load(value: str) -> ServerLoad | None:
    try:
        at, waiting, running, kv = value.split("|")
        return ServerLoad(float(waiting), float(running), float(kv), float(at))
    except ValueError:
        return None


def encode_opening(open_until: float, opened_times: int, reason: str) -> str:
    return f"{open_until!r}|{opened_times}|{reason}"


def decode_opening(value: str) -> tuple[float, int, str] | None:
    """(open_until, opened_times, reason) of a published opening."""
    parts = value.split("|", 2)
    try:
        if len(parts) == 3:
            return float(parts[0]), int(parts[1]), parts[2]
        return float(parts[0]), 0, parts[1] if len(parts) > 1 else ""
    except ValueError:
        return None
