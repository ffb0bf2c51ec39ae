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
``P nonce:X``          string  a used API nonce, until it expires (claims.py)
``P idem:K``           string  an applied idempotency key, for
                               ``PUSH_IDEMPOTENCY_WINDOW`` (claims.py)
``P started``          hash    node → when it started (unix seconds, as
                               ``repr(float)``): ``get_nodes``; written by
                               resync.py, not by the script
``P epoch``            string  the cluster's generation: made by the first node
                               to find Redis empty; a node that last saw
                               another one knows Redis lost its state
``P waiting``          zset    nodes that must write their clients back before
                               the cluster is whole → deadline (ms, Redis time)
=====================  ======  ===============================================

Channels: ``P node:N`` (one per node) and ``P all`` (``send_to_all``, and the
``W`` / ``w`` notes that the cluster stopped or may have become whole, ``H``
when a node gets its first client, ``R`` when one retires). A message is one
kind letter, a JSON header, ``\\n``, then a payload: :mod:`.format` is the one
place that lists every kind, with its header, and who publishes it (most are
built here; ``tests/cluster/test_format.py`` checks this script builds no
other).

``push_server/events/lua.py`` reads ``u:``, ``g:``, ``cu:``, ``cg:``, ``s:``,
``clients``, ``nodes``, ``lease:`` and ``reap:``: renaming a key means changing
it there too.

The script is one text in two modules: the operations of the API and of the
node's clients here, the membership's (lease, joining an epoch, the ``waiting``
set, sweeping, reaping, write-back, retiring) in :mod:`.lua_membership`,
spliced into this one's dispatcher. It stays one script, with one SHA and one
atomic dispatcher, because the membership's branches share the helpers above
(``depart``, ``bind``, ``join``) and run on the same keys.

Keys are built inside the script rather than passed as ``KEYS``: fine on one
Redis (or a primary with replicas); docs/cluster.md says what Redis Cluster
would need instead.
"""

from __future__ import annotations

from .lua_membership import MEMBERSHIP_HELPERS, MEMBERSHIP_OPERATIONS

#: Helpers and the first operations (clients, uids, groups, sessions, pushes).
_OPERATIONS_HEAD = r"""
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

"""

_OPERATIONS = r"""local function online(cid)
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

"""

_END = r"""end
return redis.error_reply('unknown operation ' .. tostring(op))
"""

#: The one script: ``ARGV[1]`` names the operation, ``ARGV[2]`` is the key prefix.
SCRIPT = _OPERATIONS_HEAD + MEMBERSHIP_HELPERS + _OPERATIONS + MEMBERSHIP_OPERATIONS + _END
