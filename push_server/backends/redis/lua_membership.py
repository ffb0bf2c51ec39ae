"""The membership's share of the Lua script (:mod:`.lua`): the waiting set's helpers and the branches of leases, joins, sweeps, reaps and write-backs.

Text, not a script of its own: :mod:`.lua` splices :data:`MEMBERSHIP_HELPERS`
among its helpers and :data:`MEMBERSHIP_OPERATIONS` into its dispatcher
(``elseif op == ...``), so the cluster still runs one script. These branches
use that module's helpers (``depart``, ``bind``, ``join``, ``node_of``) and
keys (its key table); the Python that calls them is :mod:`.membership`,
:mod:`.reaping` and :mod:`.resync`.
"""

from __future__ import annotations

#: ``now_ms`` (Redis's clock), ``waiting`` (the nodes still awaited) and ``holders`` (the nodes to remember).
MEMBERSHIP_HELPERS = r"""-- Milliseconds, Redis's clock: every node's deadline is read on one clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The nodes the cluster still waits for (minus `done`, and minus those whose
-- deadline passed: a node that did not come back within its lease is dead).
-- The call that empties the set tells every node at once ('w').
local function waiting(done)
  local key = P .. 'waiting'
  local had = redis.call('ZCARD', key)
  if had == 0 then return {} end
  if done then redis.call('ZREM', key, done) end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms())
  local left = redis.call('ZRANGE', key, 0, -1)
  if #left == 0 then redis.call('PUBLISH', P .. 'all', 'w[]\n') end
  return left
end

-- The nodes a node must remember: those holding clients, or still awaited.
-- If Redis loses everything, the first node back names them (see 'join').
local function holders()
  local out = redis.call('ZRANGE', P .. 'waiting', 0, -1)
  for _, n in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
    if redis.call('EXISTS', P .. 'nc:' .. n) == 1 then out[#out + 1] = n end
  end
  return out
end

"""

#: ``renew``, ``join``, ``synced``, ``gate``, ``sweep``, ``reap``, ``reclaim``, ``resync``, ``retire``.
MEMBERSHIP_OPERATIONS = r"""elseif op == 'renew' then
  -- The lease; {1 when the node was not in `nodes` (it was reaped, or Redis
  -- lost everything: the node reconnects and writes its state back), the
  -- nodes to remember}. A node still awaited keeps its deadline a lease ahead.
  -- A missing node is not added back here: 'join' must see it missing, so
  -- that a reaped node holding clients is awaited (503) while it writes them back.
  local node = ARGV[3]
  if redis.call('SISMEMBER', P .. 'nodes', node) == 0 then return {1, holders()} end
  redis.call('SET', P .. 'lease:' .. node, '1', 'PX', ARGV[4])
  redis.call('ZADD', P .. 'waiting', 'XX', now_ms() + tonumber(ARGV[4]), node)
  return {0, holders()}

elseif op == 'join' then
  -- A node (re)connecting. ARGV[3] node, [4] lease ms, [5] the epoch it last
  -- saw ('' at its first start), [6] a fresh epoch in case Redis has none,
  -- [7] '1' if it holds clients, [8...] the nodes it last saw holding clients.
  -- No epoch means Redis lost everything (or is new): this first node back
  -- names the nodes that must write their clients back before any API call
  -- is answered again. A node that finds its state lost (a new epoch, or it
  -- was reaped) and holds clients names itself. Each clears its own entry
  -- ('synced'); an entry also lapses with its deadline, a lease from now.
  local me, ttl, seen = ARGV[3], tonumber(ARGV[4]), ARGV[5]
  local deadline, added = now_ms() + ttl, 0
  local epoch = redis.call('GET', P .. 'epoch')
  if not epoch then
    epoch = ARGV[6]
    redis.call('SET', P .. 'epoch', epoch)
    for i = 8, #ARGV do
      if ARGV[i] ~= me then added = added + redis.call('ZADD', P .. 'waiting', deadline, ARGV[i]) end
    end
  end
  local missing = redis.call('SADD', P .. 'nodes', me) == 1
  redis.call('SET', P .. 'lease:' .. me, '1', 'PX', ttl)
  local lost = seen ~= '' and (seen ~= epoch or missing)
  if lost and ARGV[7] == '1' then added = added + redis.call('ZADD', P .. 'waiting', deadline, me) end
  -- Every node stops answering until the set is empty again.
  if added > 0 then redis.call('PUBLISH', P .. 'all', 'W[]\n') end
  return {epoch, lost and 1 or 0, holders()}

elseif op == 'synced' then
  -- The node wrote its clients back: the nodes still awaited.
  return waiting(ARGV[3])

elseif op == 'gate' then
  return waiting(nil)

elseif op == 'sweep' then
  -- Claim the nodes whose lease expired (and reapings whose reaper died).
  -- The script is atomic, so each dead node is claimed by exactly one caller.
  local me, claimed = ARGV[3], {}
  for _, n in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
    if n ~= me and redis.call('EXISTS', P .. 'lease:' .. n) == 0 then
      redis.call('SREM', P .. 'nodes', n)
      if redis.call('EXISTS', P .. 'nc:' .. n) == 1 then
        redis.call('SUNIONSTORE', P .. 'reap:' .. n, P .. 'reap:' .. n, P .. 'nc:' .. n)
        redis.call('DEL', P .. 'nc:' .. n)
      end
      redis.call('HSET', P .. 'reaping', n, me)
      claimed[#claimed + 1] = n
    end
  end
  local reaping = redis.call('HGETALL', P .. 'reaping')
  for i = 1, #reaping, 2 do
    local n, reaper = reaping[i], reaping[i + 1]
    if reaper ~= me and redis.call('EXISTS', P .. 'lease:' .. reaper) == 0 then
      redis.call('HSET', P .. 'reaping', n, me)
      claimed[#claimed + 1] = n
    end
  end
  return claimed

elseif op == 'reap' then
  -- Depart up to ARGV[5] clients of a dead node; the count left, or -1 to stop
  -- (the node came back, or another node took the reaping over).
  local dead, me = ARGV[3], ARGV[4]
  if redis.call('HGET', P .. 'reaping', dead) ~= me then return -1 end
  if redis.call('SISMEMBER', P .. 'nodes', dead) == 1 then
    redis.call('HDEL', P .. 'reaping', dead)
    return -1
  end
  local key = P .. 'reap:' .. dead
  for _, cid in ipairs(redis.call('SPOP', key, tonumber(ARGV[5]))) do depart(cid, '') end
  local left = redis.call('SCARD', key)
  if left == 0 then redis.call('HDEL', P .. 'reaping', dead) end
  return left

elseif op == 'reclaim' then
  -- A node that finds itself reaped takes back the clients not reaped yet.
  local me = ARGV[3]
  if redis.call('EXISTS', P .. 'reap:' .. me) == 1 then
    redis.call('SUNIONSTORE', P .. 'nc:' .. me, P .. 'nc:' .. me, P .. 'reap:' .. me)
    redis.call('DEL', P .. 'reap:' .. me)
  end
  redis.call('HDEL', P .. 'reaping', me)
  return redis.call('SMEMBERS', P .. 'nc:' .. me)

elseif op == 'resync' then
  -- ARGV[4] is JSON: [[cid, uid|false, [groups], [k, v, ...]], ...], this
  -- node's clients as its mirror has them. A client Redis still knows keeps
  -- Redis's state (returned, so the node refreshes its mirror: updates made
  -- while the node was cut off are in Redis, not in the mirror); a client
  -- Redis lost is written back from the mirror.
  local me, out = ARGV[3], {}
  for _, c in ipairs(cjson.decode(ARGV[4])) do
    local cid, uid, groups, session = c[1], c[2], c[3], c[4]
    redis.call('SADD', P .. 'nc:' .. me, cid)
    if redis.call('SADD', P .. 'clients', cid) == 0 then
      out[#out + 1] = {cid, redis.call('GET', P .. 'cu:' .. cid), redis.call('SMEMBERS', P .. 'cg:' .. cid),
                       redis.call('HGETALL', P .. 's:' .. cid)}
    else
      if uid then bind(cid, uid) end
      for _, g in ipairs(groups) do join(cid, g, me) end
      for i = 1, #session, 2 do redis.call('HSET', P .. 's:' .. cid, session[i], session[i + 1]) end
    end
  end
  -- One JSON string: far cheaper for the node to parse than nested replies.
  -- (cjson writes an empty list as {}; the node reads either as empty.)
  return cjson.encode(out)

elseif op == 'retire' then
  -- A node shutting down: its lease, and any client it could not unregister.
  local me = ARGV[3]
  for _, cid in ipairs(redis.call('SMEMBERS', P .. 'nc:' .. me)) do depart(cid, '') end
  redis.call('DEL', P .. 'nc:' .. me, P .. 'lease:' .. me)
  redis.call('SREM', P .. 'nodes', me)
  waiting(me)
  -- Gone for good: no node is to wait for it if Redis loses everything.
  redis.call('PUBLISH', P .. 'all', 'R' .. cjson.encode({me}) .. '\n')
  return 1
"""
