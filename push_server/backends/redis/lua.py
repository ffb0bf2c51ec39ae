"""The Lua side of the Redis backend: every change to shared state, atomically, in one round trip.

One script with a dispatcher (``ARGV[1]`` names the operation, ``ARGV[2]`` is
the key prefix). Running a whole operation inside Redis gives three things the
backend relies on:

- **atomicity**: an index never shows half an operation, and a departing
  client's leave signals are published exactly once (``SREM clients`` decides);
- **order**: the change and the messages it publishes (mirror updates to the
  client's node, leave signals) happen at one point of Redis's single timeline,
  so a node applies them in the same order as everything else published to it;
- **one round trip** per API operation.

Keys (``P`` is the prefix; ``N`` a node id; a client id is ``N.<random>``):

=====================  ======  ===============================================
``P nodes``            set     nodes that hold a lease (or held one)
``P lease:N``          string  the node's lease, expires after the node timeout
``P reaping``          hash    dead node → the live node reaping it
``P nc:N``             set     the node's clients (``P reap:N`` while reaped)
``P clients``          set     every client of the cluster
``P cu:CID``           string  the client's uid
``P cg:CID``           set     the client's groups
``P s:CID``            hash    the client's session: key → JSON value
``P u:UID``            set     the uid's clients
``P uids``             set     every bound uid
``P g:G``              set     the group's clients
``P gn:G``             hash    node → how many of the group's clients it holds
``P gu:G``             hash    uid → how many of the group's clients it has
``P groups``           set     every non-empty group
``P nonce:X``          string  a used API nonce, until it expires
``P epoch``            string  the cluster's generation: made by the first node
                               to find Redis empty; a node that last saw
                               another one knows Redis lost its state
``P waiting``          zset    nodes that must write their clients back before
                               the cluster is whole → deadline (ms, Redis time)
=====================  ======  ===============================================

Channels: ``P node:N`` (one per node) and ``P all`` (``send_to_all``, and the
``W`` / ``w`` notes that the cluster stopped or may have become whole, ``H``
when a node gets its first client, ``R`` when one retires). A
message is one kind byte, a JSON header, ``\\n``, then a payload (a ready
WebSocket frame or a session's JSON). JSON never contains a raw newline, so
the first ``\\n`` ends the header.

Keys are built inside the script rather than passed as ``KEYS``: fine on one
Redis (or a primary with replicas); docs/cluster.md says what Redis Cluster
would need instead.
"""

from __future__ import annotations

SCRIPT = r"""
local op, P = ARGV[1], ARGV[2]

local function node_of(cid)
  return string.match(cid, '^([%w_%-]+)%.')
end

local function publish(node, msg)
  redis.call('PUBLISH', P .. 'node:' .. node, msg)
end

local function dec(key, field)
  if redis.call('HINCRBY', key, field, -1) <= 0 then redis.call('HDEL', key, field) end
end

local function unbind(cid, uid)
  redis.call('DEL', P .. 'cu:' .. cid)
  local key = P .. 'u:' .. uid
  redis.call('SREM', key, cid)
  if redis.call('EXISTS', key) == 0 then redis.call('SREM', P .. 'uids', uid) end
  for _, g in ipairs(redis.call('SMEMBERS', P .. 'cg:' .. cid)) do dec(P .. 'gu:' .. g, uid) end
end

local function bind(cid, uid)
  local old = redis.call('GET', P .. 'cu:' .. cid)
  if old == uid then return false end
  if old then unbind(cid, old) end
  redis.call('SET', P .. 'cu:' .. cid, uid)
  redis.call('SADD', P .. 'u:' .. uid, cid)
  redis.call('SADD', P .. 'uids', uid)
  for _, g in ipairs(redis.call('SMEMBERS', P .. 'cg:' .. cid)) do
    redis.call('HINCRBY', P .. 'gu:' .. g, uid, 1)
  end
  return true
end

local function join(cid, g, node)
  if redis.call('SADD', P .. 'g:' .. g, cid) == 0 then return false end
  redis.call('SADD', P .. 'cg:' .. cid, g)
  redis.call('SADD', P .. 'groups', g)
  redis.call('HINCRBY', P .. 'gn:' .. g, node, 1)
  local uid = redis.call('GET', P .. 'cu:' .. cid)
  if uid then redis.call('HINCRBY', P .. 'gu:' .. g, uid, 1) end
  return true
end

local function leave(cid, g, node, uid)
  local key = P .. 'g:' .. g
  if redis.call('SREM', key, cid) == 0 then return false end
  redis.call('SREM', P .. 'cg:' .. cid, g)
  if redis.call('EXISTS', key) == 0 then
    redis.call('DEL', P .. 'gn:' .. g, P .. 'gu:' .. g)
    redis.call('SREM', P .. 'groups', g)
    return true
  end
  dec(P .. 'gn:' .. g, node)
  if uid then dec(P .. 'gu:' .. g, uid) end
  return true
end

-- A client leaves the cluster: out of every index, and a leave signal for each
-- of its groups to every node still holding members (but `skip`, whose local
-- members already had theirs). SREM on `clients` makes this happen once.
local function depart(cid, skip)
  if redis.call('SREM', P .. 'clients', cid) == 0 then return 0 end
  local node = node_of(cid) or ''
  redis.call('SREM', P .. 'nc:' .. node, cid)
  local uid = redis.call('GET', P .. 'cu:' .. cid)
  for _, g in ipairs(redis.call('SMEMBERS', P .. 'cg:' .. cid)) do
    leave(cid, g, node, uid)
    local msg = 'L' .. cjson.encode({g, uid or false, cid}) .. '\n'
    for _, n in ipairs(redis.call('HKEYS', P .. 'gn:' .. g)) do
      if n ~= skip then publish(n, msg) end
    end
  end
  if uid then unbind(cid, uid) end
  redis.call('DEL', P .. 'cg:' .. cid, P .. 's:' .. cid)
  return 1
end

-- Milliseconds, Redis's clock: every node's deadline is read on one clock.
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

local function online(cid)
  return redis.call('SISMEMBER', P .. 'clients', cid) == 1
end

local function write_session(cid, from, replace)
  local key = P .. 's:' .. cid
  if replace then redis.call('DEL', key) end
  for i = from, #ARGV, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
end

if op == 'register' then
  local cid, uid = ARGV[3], ARGV[4]
  local node = node_of(cid)
  redis.call('SADD', P .. 'clients', cid)
  redis.call('SADD', P .. 'nc:' .. node, cid)
  -- A node's first client: every node learns it now holds clients (see 'join').
  if redis.call('SCARD', P .. 'nc:' .. node) == 1 then
    redis.call('PUBLISH', P .. 'all', 'H' .. cjson.encode({node}) .. '\n')
  end
  if uid ~= '' then bind(cid, uid) end
  return 1

elseif op == 'unregister' then
  return depart(ARGV[3], ARGV[4])

elseif op == 'depart_many' then
  local n = 0
  for i = 4, #ARGV do n = n + depart(ARGV[i], ARGV[3]) end
  return n

elseif op == 'bind_uid' then
  local cid, uid = ARGV[3], ARGV[4]
  if online(cid) and bind(cid, uid) then
    publish(node_of(cid), 'b' .. cjson.encode({cid, uid}) .. '\n')
  end
  return 1

elseif op == 'unbind_uid' then
  local cid, uid = ARGV[3], ARGV[4]
  if redis.call('GET', P .. 'cu:' .. cid) == uid then
    unbind(cid, uid)
    publish(node_of(cid), 'B' .. cjson.encode({cid}) .. '\n')
  end
  return 1

elseif op == 'join_group' then
  local cid, g = ARGV[3], ARGV[4]
  if online(cid) and join(cid, g, node_of(cid)) then
    publish(node_of(cid), 'j' .. cjson.encode({cid, g}) .. '\n')
  end
  return 1

elseif op == 'leave_group' then
  local cid, g = ARGV[3], ARGV[4]
  if online(cid) and leave(cid, g, node_of(cid), redis.call('GET', P .. 'cu:' .. cid)) then
    publish(node_of(cid), 'l' .. cjson.encode({cid, g}) .. '\n')
  end
  return 1

elseif op == 'ungroup' then
  local g = ARGV[3]
  for _, cid in ipairs(redis.call('SMEMBERS', P .. 'g:' .. g)) do redis.call('SREM', P .. 'cg:' .. cid, g) end
  local nodes = redis.call('HKEYS', P .. 'gn:' .. g)
  redis.call('DEL', P .. 'g:' .. g, P .. 'gn:' .. g, P .. 'gu:' .. g)
  redis.call('SREM', P .. 'groups', g)
  local msg = 'x' .. cjson.encode({g}) .. '\n'
  for _, n in ipairs(nodes) do publish(n, msg) end
  return 1

elseif op == 'set_session' or op == 'update_session' then
  -- ARGV[4] is the whole JSON (for the node's mirror); then key, value pairs.
  local cid = ARGV[3]
  if online(cid) then
    local replace = op == 'set_session'
    write_session(cid, 5, replace)
    publish(node_of(cid), (replace and 's' or 'm') .. cjson.encode({cid}) .. '\n' .. ARGV[4])
  end
  return 1

elseif op == 'send_to_uid' then
  -- ARGV[3] header, ARGV[4] frame, then the uids: publish to the nodes of their clients.
  local nodes = {}
  for i = 5, #ARGV do
    for _, cid in ipairs(redis.call('SMEMBERS', P .. 'u:' .. ARGV[i])) do
      local n = node_of(cid)
      if n then nodes[n] = true end
    end
  end
  local msg = 'u' .. ARGV[3] .. '\n' .. ARGV[4]
  for n in pairs(nodes) do publish(n, msg) end
  return 1

elseif op == 'send_to_group' then
  -- ARGV[3] header, ARGV[4] frame, then the groups: publish to the nodes holding members.
  local msg = 'g' .. ARGV[3] .. '\n' .. ARGV[4]
  if #ARGV == 5 then
    for _, n in ipairs(redis.call('HKEYS', P .. 'gn:' .. ARGV[5])) do publish(n, msg) end
    return 1
  end
  local nodes = {}
  for i = 5, #ARGV do
    for _, n in ipairs(redis.call('HKEYS', P .. 'gn:' .. ARGV[i])) do nodes[n] = true end
  end
  for n in pairs(nodes) do publish(n, msg) end
  return 1

elseif op == 'sessions_by_group' then
  local out = {}
  for _, cid in ipairs(redis.call('SMEMBERS', P .. 'g:' .. ARGV[3])) do
    out[#out + 1] = cid
    out[#out + 1] = redis.call('HGETALL', P .. 's:' .. cid)
  end
  return out

elseif op == 'renew' then
  -- The lease; {1 when the node was not in `nodes` (it was reaped, or Redis
  -- lost everything: the node reconnects and writes its state back), the
  -- nodes to remember}. A node still awaited keeps its deadline a lease ahead.
  local node = ARGV[3]
  redis.call('SET', P .. 'lease:' .. node, '1', 'PX', ARGV[4])
  redis.call('ZADD', P .. 'waiting', 'XX', now_ms() + tonumber(ARGV[4]), node)
  return {redis.call('SADD', P .. 'nodes', node), holders()}

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
end
return redis.error_reply('unknown operation ' .. tostring(op))
"""
