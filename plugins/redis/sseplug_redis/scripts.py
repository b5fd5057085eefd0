"""The Redis keys of a fleet and the Lua scripts that change them (each one round trip).

Keys (standalone Redis; the scripts build session key names, so not Redis Cluster):

- ``sseplug:runners``: sorted set, runner token -> its last heartbeat (Redis time, ms);
- ``sseplug:runner:TOKEN``: hash (host, pid, started, held, open), expiring ``lease_ttl`` after
  the last heartbeat: the runner's session. A runner's leases are valid while it exists;
- ``sseplug:lease:ID``: the token of the runner that holds stream ``ID`` (no expiry of its own:
  it lapses with the holder's session, and another runner may then take it);
- ``sseplug:checkpoint:ID``: the last event id written for ``ID`` (fenced, with its events);
- ``sseplug:fleet``: the fleet's marker, a random epoch set by the first runner. A runner that
  saw it and finds it gone or changed knows Redis lost the fleet's state (restarted empty);
- ``sseplug:reconnect-budget``: hash (tokens, at) of the fleet-wide reconnect token bucket, and
  ``sseplug:reconnect-budget:SECOND``: the tokens it granted in that second (Unix time, kept 5 min).
"""

from __future__ import annotations

__all__ = ["RUNNERS_KEY", "MARKER_KEY", "BUDGET_KEY", "SESSION_PREFIX", "lease_key", "checkpoint_key",
           "session_key", "SCRIPTS"]

RUNNERS_KEY = "sseplug:runners"
MARKER_KEY = "sseplug:fleet"
BUDGET_KEY = "sseplug:reconnect-budget"
SESSION_PREFIX = "sseplug:runner:"


def lease_key(connection_id: str) -> str:
    """The key holding the token of the runner that holds stream ``connection_id``."""
    return f"sseplug:lease:{connection_id}"


def checkpoint_key(connection_id: str) -> str:
    """The key holding the last event id saved for stream ``connection_id``."""
    return f"sseplug:checkpoint:{connection_id}"


def session_key(token: str) -> str:
    """The session hash of runner ``token``: it exists while the runner is alive."""
    return SESSION_PREFIX + token


# KEYS[1] runners, KEYS[2] our session, KEYS[3] marker; ARGV[1] token, ARGV[2] ttl ms, ARGV[3]
# 'join' or 'renew', ARGV[4] the epoch we know ('' none), ARGV[5] a new epoch, ARGV[6] the session
# prefix, then field, value pairs for the session hash. The live runners are those whose session
# exists (the sorted set only lists them). {'lost', marker} when the marker is not the one we know (Redis lost
# the fleet's state); {'expired', marker} when renewing a session that is gone (we were away
# longer than the lease time); else {'ok', marker, then (token, ms until its session expires) for
# each live runner}.
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local marker = redis.call('GET', KEYS[3])
if ARGV[4] ~= '' and marker ~= ARGV[4] then return {'lost', marker or ''} end
if ARGV[3] == 'renew' and redis.call('EXISTS', KEYS[2]) == 0 then return {'expired', marker or ''} end
if not marker then
  marker = ARGV[5]
  redis.call('SET', KEYS[3], marker)
end
if #ARGV > 6 then redis.call('HSET', KEYS[2], unpack(ARGV, 7)) end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
local reply = {'ok', marker}
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local token = members[i]
  if redis.call('EXISTS', ARGV[6] .. token) == 1 then
    reply[#reply + 1] = token
    reply[#reply + 1] = tostring(tonumber(members[i + 1]) + ttl - now)
  else
    redis.call('ZREM', KEYS[1], token)
  end
end
return reply
"""

# KEYS[1] our session, KEYS[2..] leases; ARGV[1] token, ARGV[2] session prefix. Takes each lease
# that is free, ours, or held by a runner whose session is gone; 1/0 per lease. Nothing while
# our own session is gone (we must rejoin first).
CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local taken = {}
for i = 2, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner == ARGV[1] then
    taken[i - 1] = 1
  elseif (not owner) or redis.call('EXISTS', ARGV[2] .. owner) == 0 then
    redis.call('SET', KEYS[i], ARGV[1])
    taken[i - 1] = 1
  else
    taken[i - 1] = 0
  end
end
return taken
"""

# KEYS leases; ARGV[1] token: delete each one that holds our token. The number deleted.
RELEASE = """
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then n = n + redis.call('DEL', KEYS[i]) end
end
return n
"""

# KEYS[1] lease, KEYS[2] checkpoint, KEYS[3] Redis stream (ignored without events), KEYS[4] our
# session; ARGV[1] token, ARGV[2] last event id, ARGV[3] maxlen ('' none), ARGV[4] connection id,
# then (id, event, data) per event. 1 when written; nothing written (the fence) and 0 when another
# runner holds the lease, -1 when the lease or our session is gone (expired, or Redis lost its
# data: the coordinator's next heartbeat tells which).
SAVE = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
if not owner or redis.call('EXISTS', KEYS[4]) == 0 then return -1 end
local maxlen = ARGV[3]
for i = 5, #ARGV, 3 do
  if maxlen == '' then
    redis.call('XADD', KEYS[3], '*', 'connection', ARGV[4], 'id', ARGV[i], 'event', ARGV[i + 1], 'data', ARGV[i + 2])
  else
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*',
               'connection', ARGV[4], 'id', ARGV[i], 'event', ARGV[i + 1], 'data', ARGV[i + 2])
  end
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

# KEYS[1] our session, then (lease, checkpoint) pairs; ARGV[1] token, ARGV[2] session prefix,
# then one last event id per pair. After Redis lost its state: take each lease as CLAIM does and
# put back the checkpoint we remember unless one was written meanwhile. 1/0 per pair.
RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local taken = {}
for i = 2, #KEYS, 2 do
  local owner = redis.call('GET', KEYS[i])
  local n = i / 2
  if owner == ARGV[1] or (not owner) or redis.call('EXISTS', ARGV[2] .. owner) == 0 then
    redis.call('SET', KEYS[i], ARGV[1])
    if ARGV[n + 2] ~= '' then redis.call('SET', KEYS[i + 1], ARGV[n + 2], 'NX') end
    taken[n] = 1
  else
    taken[n] = 0
  end
end
return taken
"""

# KEYS[1] budget; ARGV[1] rate per second, ARGV[2] capacity, ARGV[3] tokens wanted. A token bucket
# shared by the fleet: the number of tokens granted now (0..wanted).
BUDGET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate / 1000)
local granted = math.min(tonumber(ARGV[3]), math.floor(tokens))
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - granted), 'at', now)
redis.call('PEXPIRE', KEYS[1], 60000)
if granted > 0 then  -- tokens granted per second of Redis time, kept 5 minutes: what the fleet was allowed
  local second = KEYS[1] .. ':' .. math.floor(now / 1000)
  redis.call('INCRBY', second, granted)
  redis.call('EXPIRE', second, 300)
end
return granted
"""

SCRIPTS = {"heartbeat": HEARTBEAT, "claim": CLAIM, "release": RELEASE, "save": SAVE, "restore": RESTORE,
           "budget": BUDGET}
"""Name -> Lua source, registered once per configured plugin."""
