"""The key layout, the stream ids and the server-side scripts of the Redis sink.

Every key is ``<prefix>:<kind>:<provider>:<symbol>`` (candles add ``:<interval>``), with the
provider and symbol verbatim; build keys from these parts rather than parse them, since
symbols may hold ``:`` themselves. Each key's pub/sub channel has the same name as the key
(channels and keys are separate namespaces in Redis). See the README for the whole layout.

Three writes need more than one command to stay idempotent, so they run as Lua scripts (one
``EVALSHA`` per key per batch, atomic on the server, which also PUBLISHes what they wrote: a
retried batch re-publishes no trade or candle, and the client packs one command per key rather
than one per event):

* :data:`TRADES_LUA` appends trades to a stream under ids derived from their event time, and
  skips a trade that is already there (a retried batch adds nothing);
* :data:`CANDLES_LUA` replaces the candle of a bucket by ``tickwire.events.candle_replaces``: a
  ``built`` candle never replaces a ``stream`` or ``backfill`` one, nor a ``built`` one that
  counts more trades;
* :data:`GAPS_LUA` upserts gaps and drops the ones older than the retention.
"""

from __future__ import annotations

from tickwire.events import Candle

#: Stream-id sequence slots per nanosecond of event time (trades with the same ``ts``).
SLOTS = 1000


def key(prefix: str, kind: str, provider: str, symbol: str) -> str:
    """The key (and channel) of one kind of data for one symbol."""
    return f"{prefix}:{kind}:{provider}:{symbol}"


def candle_key(prefix: str, candle: Candle) -> str:
    """The candle ZSET of ``candle``'s symbol and interval."""
    return f"{prefix}:candle:{candle.provider}:{candle.symbol}:{candle.interval}"


def trade_id_base(ts: int) -> tuple[int, int]:
    """The stream id a trade at ``ts`` (ns) asks for: ``<ms>-<sub-ms ns * 1000>``.

    The id's milliseconds are the event time (so ``MINID`` trims by event time and
    ``XRANGE key <ms> <ms>`` finds the trades of a millisecond); the sequence keeps the
    nanoseconds below the millisecond and leaves :data:`SLOTS` slots for trades sharing one
    ``ts``. Ids of trades in time order therefore go up, as a stream requires.
    """
    ms, sub = divmod(ts, 1_000_000)
    return ms, sub * SLOTS


# KEYS[1] the stream, KEYS[2] its "late" ZSET; ARGV[1] TTL ms, ARGV[2] MAXLEN, ARGV[3] MINID ms,
# ARGV[4] '1' to PUBLISH each added trade on the stream's channel, then per trade (in time
# order): ms, seq, identity, json. Returns how many entries were added.
#
# A trade whose id is above the stream's last id is appended under it. One at or below it is
# either already stored (a retried batch: found by its identity among the ids its own ts asks
# for, or in the late ZSET) and skipped, or it is late (older than the stream's newest entry,
# e.g. backfilled): appended under <last id + 1>, with its identity kept in the late ZSET so
# that a retry skips it too.
TRADES_LUA = """
local key, late = KEYS[1], KEYS[2]
local last_ms, last_seq = -1, -1
if redis.call('EXISTS', key) == 1 then
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      local id = info[i + 1]
      local dash = string.find(id, '-', 1, true)
      last_ms = tonumber(string.sub(id, 1, dash - 1))
      last_seq = tonumber(string.sub(id, dash + 1))
      break
    end
  end
end
local publish = ARGV[4] == '1'
local added, late_added = 0, 0
for i = 5, #ARGV, 4 do
  local ms, seq = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local ident, json = ARGV[i + 2], ARGV[i + 3]
  local newer = ms > last_ms or (ms == last_ms and seq > last_seq)
  local dup = false
  if not newer then
    local lo = string.format('%d-%d', ms, seq)
    local hi = string.format('%d-%d', ms, seq + 999)
    for _, entry in ipairs(redis.call('XRANGE', key, lo, hi)) do
      if entry[2][2] == ident then dup = true break end
    end
    if not dup and redis.call('ZSCORE', late, ident) then dup = true end
  end
  if not dup then
    local new_ms, new_seq = ms, seq
    if not newer then new_ms, new_seq = last_ms, last_seq + 1 end
    redis.call('XADD', key, string.format('%d-%d', new_ms, new_seq), 'id', ident, 'json', json)
    if new_ms ~= ms or new_seq > seq + 999 then
      redis.call('ZADD', late, ms, ident)
      late_added = late_added + 1
    end
    last_ms, last_seq = new_ms, new_seq
    added = added + 1
    if publish then redis.call('PUBLISH', key, json) end
  end
end
if last_ms >= 0 then
  redis.call('XTRIM', key, 'MAXLEN', '~', ARGV[2])
  redis.call('XTRIM', key, 'MINID', '~', ARGV[3])
  redis.call('PEXPIRE', key, ARGV[1])
end
if late_added > 0 or redis.call('EXISTS', late) == 1 then
  redis.call('ZREMRANGEBYSCORE', late, '-inf', '(' .. ARGV[3])
  redis.call('PEXPIRE', late, ARGV[1])
end
return added
"""

# KEYS[1] the candle ZSET; ARGV[1] TTL ms, ARGV[2] oldest start ms kept, ARGV[3] most candles
# kept, ARGV[4] '1' to PUBLISH each written candle, then per candle: start ms (the score), json
# (the member). A candle identical to the stored one is not written (nor published) again.
# Returns how many were written.
# to_json puts ``source`` last, so a built candle's JSON ends with '"source":"built"}'.
CANDLES_LUA = """
local key = KEYS[1]
local BUILT = '"source":"built"}'
local publish = ARGV[4] == '1'
local written = 0
for i = 5, #ARGV, 2 do
  local score, member = ARGV[i], ARGV[i + 1]
  local built = string.sub(member, -#BUILT) == BUILT
  local keep_old = false
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', key, score, score)) do
    if old == member then
      keep_old = true
    elseif built then
      if string.sub(old, -#BUILT) ~= BUILT then
        keep_old = true  -- built never replaces the provider's own candle
      else  -- built over built: not with fewer trades (a builder restarted mid-bucket)
        local n, m = cjson.decode(member).trades, cjson.decode(old).trades
        if type(n) == 'number' and type(m) == 'number' and n < m then keep_old = true end
      end
    end
  end
  if not keep_old then
    redis.call('ZREMRANGEBYSCORE', key, score, score)
    redis.call('ZADD', key, score, member)
    written = written + 1
    if publish then redis.call('PUBLISH', key, member) end
  end
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[2])
redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(ARGV[3]) + 1))
redis.call('PEXPIRE', key, ARGV[1])
return written
"""

# KEYS[1] the gap hash; ARGV[1] TTL ms, ARGV[2] oldest start ms kept, ARGV[3] '1' to PUBLISH
# each gap, then per gap: field ('<kind>:<start ns>'), json. Fields whose start is older than
# the retention are deleted.
GAPS_LUA = """
local key = KEYS[1]
for i = 4, #ARGV, 2 do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1])
  if ARGV[3] == '1' then redis.call('PUBLISH', key, ARGV[i + 1]) end
end
local cutoff = tonumber(ARGV[2])
for _, field in ipairs(redis.call('HKEYS', key)) do
  local start = tonumber(string.match(field, ':(%d+)$'))
  if start and start / 1000000 < cutoff then redis.call('HDEL', key, field) end
end
redis.call('PEXPIRE', key, ARGV[1])
return 0
"""

__all__ = (
    "CANDLES_LUA",
    "GAPS_LUA",
    "SLOTS",
    "TRADES_LUA",
    "candle_key",
    "key",
    "trade_id_base",
)
