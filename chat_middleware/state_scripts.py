"""The Lua scripts RedisState runs: each check-and-count is one atomic call on the server.

Time is the server's (`TIME`, in milliseconds), so hosts with skewed clocks
agree on every window and lease. Per provider or client NAME, under the key
prefix P:

    P{scope}:{NAME}:in_flight   zset  lease id → expiry (ms); members past it are dropped
    P{scope}:{NAME}:rpm         zset  lease id → admitted at (ms); the sliding request log
    P{scope}:{NAME}:tpm         zset  "{tokens}:{lease id}" → released at (ms); the token log
    P{scope}:{NAME}:tpm_sum     int   the sum of the token log, kept as entries age out
    Pprovider:{NAME}:failures   int   provider faults in a row; expires failure_ttl after the last
    Pprovider:{NAME}:cooldown   int   cooling until (ms); expires when the cooldown ends

scope is "provider" or "client". A key's expiry is only ever pushed later
(`extend`): a lease set lives lease_s past its newest lease, a log one window
past its newest entry. Every script declares all its keys in KEYS.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

_COMMON = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function extend(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end

local function tokens_of(member)
  return tonumber(string.match(member, '^%d+')) or 0
end
"""

ADMIT_SOURCE = _COMMON + """
-- KEYS: cooldown of the provider; then per name checked (the client first, when there is one):
--       in_flight, rpm, tpm, tpm_sum
-- ARGV: lease id, lease ms, window ms, skip cooling (1/0), busy retry ms; then per name:
--       max_in_flight, rpm, tpm
-- Returns nil when admitted (both names' slots and requests taken), else {limit, name index, retry ms}.

local function token_total(log, sum, cutoff)
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff)
  if #old == 0 then return tonumber(redis.call('GET', sum)) or 0 end
  local gone = 0
  for _, member in ipairs(old) do gone = gone + tokens_of(member) end
  redis.call('ZREMRANGEBYSCORE', log, '-inf', cutoff)
  if redis.call('ZCARD', log) == 0 then
    redis.call('DEL', sum)
    return 0
  end
  return redis.call('DECRBY', sum, gone)
end

local function tokens_free_at(log, total, limit)
  local from = 0
  while true do
    local entries = redis.call('ZRANGE', log, from, from + 63, 'WITHSCORES')
    if #entries == 0 then return nil end
    for i = 1, #entries, 2 do
      total = total - tokens_of(entries[i])
      if total < limit then return tonumber(entries[i + 1]) end
    end
    from = from + 64
  end
end

local id, lease_ms, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
if ARGV[4] == '1' then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then return {'cooldown', 0, left} end
end
local names = (#KEYS - 1) / 4
for g = 0, names - 1 do
  local k, a = 2 + 4 * g, 6 + 3 * g
  local in_flight, rpm, tpm = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now)
  if in_flight > 0 and redis.call('ZCARD', KEYS[k]) >= in_flight then
    return {'max_in_flight', g, tonumber(ARGV[5])}
  end
  if rpm > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 1], '-inf', now - window)
    local n = redis.call('ZCARD', KEYS[k + 1])
    if n >= rpm then
      local oldest = redis.call('ZRANGE', KEYS[k + 1], n - rpm, n - rpm, 'WITHSCORES')
      return {'rpm', g, tonumber(oldest[2]) + window - now}
    end
  end
  if tpm > 0 then
    local total = token_total(KEYS[k + 2], KEYS[k + 3], now - window)
    if total >= tpm then
      local at = tokens_free_at(KEYS[k + 2], total, tpm) or now
      return {'tpm', g, at + window - now}
    end
  end
end
for g = 0, names - 1 do
  local k, a = 2 + 4 * g, 6 + 3 * g
  redis.call('ZADD', KEYS[k], now + lease_ms, id)
  extend(KEYS[k], lease_ms)
  if tonumber(ARGV[a + 1]) > 0 then
    redis.call('ZADD', KEYS[k + 1], now, id)
    extend(KEYS[k + 1], window)
  end
end
return false
"""

RELEASE_SOURCE = _COMMON + """
-- KEYS: failures, cooldown of the provider; then per name (provider, then client): in_flight, tpm, tpm_sum
-- ARGV: lease id, tokens, window ms, outcome, cooldown failures, cooldown ms, failure ttl ms;
--       then per name: count tokens (1/0)

local id, tokens, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
for g = 0, (#KEYS - 2) / 3 - 1 do
  local k = 3 + 3 * g
  redis.call('ZREM', KEYS[k], id)
  if tokens > 0 and ARGV[8 + g] == '1' then
    redis.call('ZADD', KEYS[k + 1], now, ARGV[2] .. ':' .. id)
    redis.call('INCRBY', KEYS[k + 2], tokens)
    extend(KEYS[k + 1], window)
    extend(KEYS[k + 2], window)
  end
end
local failures, cooldown_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
if ARGV[4] == 'success' then
  redis.call('DEL', KEYS[1])
elseif ARGV[4] == 'failure' and failures > 0 and cooldown_ms > 0 then
  if redis.call('INCR', KEYS[1]) >= failures then
    redis.call('SET', KEYS[2], now + cooldown_ms, 'PX', cooldown_ms)
    redis.call('DEL', KEYS[1])
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[7])
  end
end
return false
"""

RENEW_SOURCE = _COMMON + """
-- KEYS: in_flight sets; ARGV: lease ms, then per key: how many ids, the ids.
-- Pushes each still-present lease's expiry to now + lease ms; a lease already dropped stays dropped.

local lease_ms = tonumber(ARGV[1])
local expiry = now_ms() + lease_ms
local a = 2
for k = 1, #KEYS do
  local n = tonumber(ARGV[a])
  for i = a + 1, a + n do redis.call('ZADD', KEYS[k], 'XX', expiry, ARGV[i]) end
  a = a + n + 1
  extend(KEYS[k], lease_ms)
end
return false
"""

SNAPSHOT_SOURCE = _COMMON + """
-- KEYS: per provider: in_flight, cooldown. Returns per provider: leases alive, cooldown ms left.

local now = now_ms()
local view = {}
for k = 1, #KEYS, 2 do
  view[#view + 1] = redis.call('ZCOUNT', KEYS[k], '(' .. now, '+inf')
  view[#view + 1] = math.max(0, redis.call('PTTL', KEYS[k + 1]))
end
return view
"""


@dataclass(frozen=True)
class Script:
    """A script's source and the SHA1 that EVALSHA calls it by."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


ADMIT = Script(ADMIT_SOURCE)
RELEASE = Script(RELEASE_SOURCE)
RENEW = Script(RENEW_SOURCE)
SNAPSHOT = Script(SNAPSHOT_SOURCE)
