"""Lua scripts and key layout for the Redis stream backend.

Each topic has two keys sharing a hash tag (so they live in one Redis Cluster slot and a script
may touch both):

- ``<prefix>{<topic>}:e`` - a Redis Stream; entry id ``<index>-0`` (the index *is* the id, so
  ``XREAD`` from a cursor needs no mapping), fields ``t`` (ts_ms), ``f`` ("1" if final), ``d``
  (JSON data), in that order.
- ``<prefix>{<topic>}:m`` - a hash: ``last`` (last assigned index), ``ts`` (last ts_ms, kept
  monotonic), ``final`` ("1" once the final event is appended).

Publishing runs as one script, so index assignment, append and trimming are atomic.
"""

from __future__ import annotations

#: Default prefix of every key written by the Redis stream backend.
DEFAULT_KEY_PREFIX = "inferpipe:stream:"

# Shared helpers. Numbers are formatted with %d because Lua's tostring switches to exponent
# notation for large values. Age trimming relies on ts being non-decreasing along the stream.
_PRELUDE = """
local function fmt(n) return string.format('%d', n) end

local function now_ms(given)
  if given ~= '' then return tonumber(given) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function index_of(id) return tonumber(string.match(id, '^(%d+)')) end

local function trim_by_age(stream, now, max_age)
  if max_age <= 0 then return end
  local cutoff = now - max_age
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #first == 0 or tonumber(first[1][2][2]) >= cutoff then return end  -- the common case
  -- Bounded work per call; each publish adds one entry, so trimming keeps up.
  for _ = 1, 16 do
    local batch = redis.call('XRANGE', stream, '-', '+', 'COUNT', 64)
    for i = 1, #batch do
      if tonumber(batch[i][2][2]) >= cutoff then
        if i > 1 then redis.call('XTRIM', stream, 'MINID', batch[i][1]) end
        return
      end
    end
    if #batch == 0 then return end
    redis.call('XTRIM', stream, 'MINID', fmt(index_of(batch[#batch][1]) + 1) .. '-0')
    if #batch < 64 then return end
  end
end
"""

#: KEYS: stream, meta. ARGV: data, final ('1'/'0'), now_ms ('' = server time), max_events,
#: max_age_ms, idle_ttl_ms, finished_ttl_ms (0 = no limit). Returns {index, ts_ms}.
PUBLISH = (
    _PRELUDE
    + """
local stream, meta = KEYS[1], KEYS[2]
local state = redis.call('HMGET', meta, 'final', 'ts')
if state[1] == '1' then
  return redis.error_reply('TOPIC_FINISHED the topic has a final event')
end
local now = now_ms(ARGV[3])
local last_ts = tonumber(state[2] or '0')
if now < last_ts then now = last_ts end
local index = redis.call('HINCRBY', meta, 'last', 1)
local id = fmt(index) .. '-0'
local max_events = tonumber(ARGV[4])
if max_events > 0 then
  redis.call('XADD', stream, 'MAXLEN', max_events, id, 't', fmt(now), 'f', ARGV[2], 'd', ARGV[1])
else
  redis.call('XADD', stream, id, 't', fmt(now), 'f', ARGV[2], 'd', ARGV[1])
end
redis.call('HSET', meta, 'ts', fmt(now))
trim_by_age(stream, now, tonumber(ARGV[5]))
local ttl = tonumber(ARGV[6])
if ARGV[2] == '1' then
  redis.call('HSET', meta, 'final', '1')
  ttl = tonumber(ARGV[7])
end
if ttl > 0 then
  redis.call('PEXPIRE', meta, ttl)
  redis.call('PEXPIRE', stream, ttl)
else
  redis.call('PERSIST', meta)
  redis.call('PERSIST', stream)
end
return {index, fmt(now)}
"""
)

#: KEYS: stream, meta. ARGV: after ('' = none), limit (-1 = none), now_ms, max_age_ms.
#: Returns {'ok', last, oldest, final(0/1), entries} or {'ahead'|'expired', last, oldest}.
READ = (
    _PRELUDE
    + """
local stream, meta = KEYS[1], KEYS[2]
trim_by_age(stream, now_ms(ARGV[3]), tonumber(ARGV[4]))
local last = tonumber(redis.call('HGET', meta, 'last') or '0')
local final = 0
if redis.call('HGET', meta, 'final') == '1' then final = 1 end
local oldest = last + 1
local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
if #first > 0 then oldest = index_of(first[1][1]) end
local start = '-'
if ARGV[1] ~= '' then
  local after = tonumber(ARGV[1])
  if after > last then return {'ahead', last, oldest} end
  if after < oldest - 1 then return {'expired', last, oldest} end
  start = fmt(after + 1) .. '-0'
end
local limit = tonumber(ARGV[2])
local entries = {}
if limit > 0 then
  entries = redis.call('XRANGE', stream, start, '+', 'COUNT', limit)
elseif limit < 0 then
  entries = redis.call('XRANGE', stream, start, '+')
end
return {'ok', last, oldest, final, entries}
"""
)

#: KEYS: stream, meta. ARGV: idle_ttl_ms (0 = none). Keeps the index counter.
CLEAR = """
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], 'final')
local ttl = tonumber(ARGV[1])
if ttl > 0 and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""


def topic_keys(prefix: str, topic: str) -> tuple[str, str]:
    """Return the (stream, meta) keys of ``topic``."""
    base = f"{prefix}{{{topic}}}"
    return f"{base}:e", f"{base}:m"
