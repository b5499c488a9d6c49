"""Limit counters in Redis, so every replica draws on the same allowance.

Each check is one Lua script, atomic on the server and timed by the server's clock
(`TIME`), so replicas with skewed clocks still agree on the window. The shapes match
the in-process backend: a sorted-set log of admissions for requests per minute,
per-second token buckets in a hash for tokens per minute, and per key and period a
hash holding `spent` plus one `r:<request id>` field per reservation in flight.
"""

from __future__ import annotations

from typing import Any

from gateway.limits.types import BudgetCheck, WindowCheck

_NOW = "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

_HIT = (
    _NOW
    + """
local window, limit = 60000, tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, 0, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], window)
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {1, limit - n - 1, tonumber(first[2]) + window - now}
"""
)

_TOKENS = (
    _NOW
    + """
local sec, limit, used = math.floor(now / 1000), tonumber(ARGV[1]), 0
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local s = tonumber(all[i])
  if s <= sec - 60 then redis.call('HDEL', KEYS[1], all[i])
  else used = used + tonumber(all[i + 1]); table.insert(live, {s, tonumber(all[i + 1])}) end
end
if used < limit and tonumber(ARGV[2]) ~= 0 then
  redis.call('HINCRBY', KEYS[1], tostring(sec), ARGV[2])
  redis.call('EXPIRE', KEYS[1], 120)
  return {1, used + tonumber(ARGV[2]), 0}
end
local reset = 0
if used >= limit then
  table.sort(live, function(a, b) return a[1] < b[1] end)
  local left = used
  for _, e in ipairs(live) do
    left = left - e[2]
    if left < limit then reset = (e[1] + 60) * 1000 - now; break end
  end
end
return {used < limit and 1 or 0, used, reset}
"""
)

_ADD_TOKENS = (
    _NOW
    + """
redis.call('HINCRBY', KEYS[1], tostring(math.floor(now / 1000)), ARGV[1])
redis.call('EXPIRE', KEYS[1], 120)
return 1
"""
)

_RESERVE = (
    _NOW
    + """
if redis.call('HEXISTS', KEYS[1], 'spent') == 0 then redis.call('HSET', KEYS[1], 'spent', ARGV[5]) end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent'))
local reserved = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'r:' then
    local v = all[i + 1]
    local sep = string.find(v, '|', 1, true)
    if tonumber(string.sub(v, sep + 1)) < now then redis.call('HDEL', KEYS[1], all[i])
    else reserved = reserved + tonumber(string.sub(v, 1, sep - 1)) end
  end
end
if tonumber(ARGV[6]) > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[6]) end
if spent + reserved >= tonumber(ARGV[1]) then return {0, tostring(spent), tostring(reserved)} end
redis.call('HSET', KEYS[1], 'r:' .. ARGV[3], ARGV[2] .. '|' .. tostring(now + tonumber(ARGV[4])))
return {1, tostring(spent), tostring(reserved + tonumber(ARGV[2]))}
"""
)

_SETTLE = """
redis.call('HDEL', KEYS[1], 'r:' .. ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HINCRBYFLOAT', KEYS[1], 'spent', ARGV[2]) end
return 1
"""


class RedisBackend:
    def __init__(self, url: str, prefix: str = "gw:lim:") -> None:
        from gateway.redis_client import redis_client

        self._redis: Any = redis_client(url, timeout_s=2)
        self._prefix = prefix
        self._hit = self._redis.register_script(_HIT)
        self._tokens = self._redis.register_script(_TOKENS)
        self._add_tokens = self._redis.register_script(_ADD_TOKENS)
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)

    async def hit_requests(self, key_id: str, limit: int, request_id: str) -> WindowCheck:
        allowed, remaining, reset_ms = await self._hit(
            keys=[f"{self._prefix}rpm:{key_id}"], args=[limit, request_id]
        )
        return WindowCheck(bool(allowed), int(remaining), max(0.0, int(reset_ms) / 1000))

    async def reserve_tokens(self, key_id: str, limit: int, tokens: int) -> WindowCheck:
        allowed, used, reset_ms = await self._tokens(
            keys=[f"{self._prefix}tpm:{key_id}"], args=[limit, tokens]
        )
        return WindowCheck(bool(allowed), max(0, limit - int(used)), max(0.0, int(reset_ms) / 1000))

    async def add_tokens(self, key_id: str, tokens: int) -> None:
        await self._add_tokens(keys=[f"{self._prefix}tpm:{key_id}"], args=[tokens])

    async def reserve(
        self,
        bucket: str,
        budget: float,
        amount: float,
        request_id: str,
        ttl_s: float,
        initial: float,
        expire_at: int,
    ) -> BudgetCheck:
        args: list[str | int] = [
            repr(budget),
            repr(amount),
            request_id,
            int(ttl_s * 1000),
            repr(initial),
            expire_at,
        ]
        allowed, spent, reserved = await self._reserve(keys=[f"{self._prefix}budget:{bucket}"], args=args)
        return BudgetCheck(bool(allowed), float(spent), float(reserved))

    async def settle(self, bucket: str, request_id: str, cost: float) -> None:
        await self._settle(keys=[f"{self._prefix}budget:{bucket}"], args=[request_id, repr(cost)])

    async def spent(self, bucket: str) -> float | None:
        value = await self._redis.hget(f"{self._prefix}budget:{bucket}", "spent")
        return None if value is None else float(value)

    async def aclose(self) -> None:
        await self._redis.aclose()
