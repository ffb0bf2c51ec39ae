"""The events' Lua script: presence transitions and the queue, decided atomically in Redis.

Separate from :mod:`push_server.backends.redis.lua` on purpose: it only *reads*
the backend's indexes (``P u:UID``, ``P g:G``, ``P cu:CID``, ``P cg:CID``,
``P s:CID``, ``P clients``, ``P nodes``, ``P reap:N``) and keeps its own keys
under ``P ev:``. Each operation compares the backend's truth with the state the
business app was last told and, where they differ, flips the flag and queues
the event in the same atomic step. Two nodes racing on one uid therefore
cannot both send ``uid_online``: whoever runs second sees the flag set.

=====================  ======  ===============================================
``P ev:q``             stream  events not yet acknowledged (field ``e``: JSON)
``P ev:on``            hash    uid → 1: uids the app was told are online
``P ev:grp``           set     groups the app was told are occupied
``P ev:due``           zset    ``u:UID`` / ``g:G`` → when to look again (the
                               offline grace; online checks deferred while
                               Redis's state is being rebuilt)
``P ev:cu``            hash    client → uid as the events last saw it (a
                               rebind must re-check the old uid)
``P ev:rd:N``          set     uids/groups touched while reaping dead node N
``P ev:epoch``         hash    this Redis incarnation: ``id``, ``at``
``P ev:contrib``       set     nodes that gave their state to this incarnation
``P ev:sender``        string  the node sending events now (a lease)
``P ev:dropped``       string  events refused because the queue was full
=====================  ======  ===============================================

Common arguments: ``ARGV[1]`` operation, ``[2]`` prefix, ``[3]`` a random
token that prefixes the ids of the events this call makes, ``[4]`` the queue
bound, ``[5]`` the offline grace (s), ``[6]`` the rebuild window (s); the
operation's own arguments follow from ``ARGV[7]``.
"""

from __future__ import annotations

EVENTS_SCRIPT = r"""
local op, P, token = ARGV[1], ARGV[2], ARGV[3]
local bound, grace, window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local E = P .. 'ev:'
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local stamp = string.format('%.3f', now)
local serial = 0
local made, dropped = 0, 0

local append

local function push(id, body)
  -- body is the event's JSON after its id, starting with ','.
  append('{"id":' .. cjson.encode(id) .. body)
end

append = function(json)
  if redis.call('XLEN', E .. 'q') >= bound then
    redis.call('INCR', E .. 'dropped')
    dropped = dropped + 1
    return
  end
  redis.call('XADD', E .. 'q', '*', 'e', json)
  made = made + 1
end

local function emit(kind, field, value)
  serial = serial + 1
  push(token .. '-' .. serial, ',"type":"' .. kind .. '","time":' .. stamp .. ',"' .. field .. '":' .. cjson.encode(value) .. '}')
end

-- While a fresh Redis (restarted empty) is being refilled by the nodes, a uid
-- with connections may simply not have been written back yet by its node's
-- contribution: telling the app it came online would be false. Online checks
-- wait until every live node has contributed (or the window has passed).
local function deferring()
  local at = redis.call('HGET', E .. 'epoch', 'at')
  -- No incarnation yet: Redis was just emptied (or this is the very first
  -- start); the nodes' epoch checks make one within half a second.
  if not at then return true end
  at = tonumber(at)
  if now - at > window then return false end
  -- A node re-enters `nodes` at its next lease renewal: for the first half of
  -- the window (one node timeout) the list may still be missing some.
  if now - at < window / 2 then return true end
  -- Only live nodes (holding a lease) count: a dead one is reaped instead.
  for _, n in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
    if redis.call('SISMEMBER', E .. 'contrib', n) == 0 and redis.call('EXISTS', P .. 'lease:' .. n) == 1 then
      return true
    end
  end
  return false
end

local function touch_uid(uid, settling)
  local member = 'u:' .. uid
  local count = redis.call('SCARD', P .. 'u:' .. uid)
  local on = redis.call('HEXISTS', E .. 'on', uid) == 1
  if count > 0 then
    if on then redis.call('ZREM', E .. 'due', member)
    elseif deferring() then redis.call('ZADD', E .. 'due', now + 0.25, member)
    else
      redis.call('HSET', E .. 'on', uid, 1)
      redis.call('ZREM', E .. 'due', member)
      emit('uid_online', 'uid', uid)
    end
  elseif on then
    if settling then
      redis.call('HDEL', E .. 'on', uid)
      redis.call('ZREM', E .. 'due', member)
      emit('uid_offline', 'uid', uid)
    elseif not redis.call('ZSCORE', E .. 'due', member) then
      -- The grace starts at the last connection's departure; a later departure
      -- of the same uid (count already 0) does not push it back.
      redis.call('ZADD', E .. 'due', now + grace, member)
    end
  else
    redis.call('ZREM', E .. 'due', member)
  end
end

local function touch_group(g)
  local member = 'g:' .. g
  local count = redis.call('SCARD', P .. 'g:' .. g)
  local occupied = redis.call('SISMEMBER', E .. 'grp', g) == 1
  if count > 0 and not occupied then
    if deferring() then redis.call('ZADD', E .. 'due', now + 0.25, member); return end
    redis.call('SADD', E .. 'grp', g)
    emit('group_occupied', 'group', g)
  elseif count == 0 and occupied then
    redis.call('SREM', E .. 'grp', g)
    emit('group_vacated', 'group', g)
  end
  redis.call('ZREM', E .. 'due', member)
end

local function touch(member, settling)
  local kind, name = string.sub(member, 1, 1), string.sub(member, 3)
  if kind == 'u' then touch_uid(name, settling) else touch_group(name) end
end

-- client_closed: the id is made from the client id, so the event a reaper
-- makes again after taking over an interrupted reaping deduplicates.
local function closed(cid, uid, groups_json, session_json)
  serial = serial + 1
  push('closed-' .. cid, ',"type":"client_closed","time":' .. stamp .. ',"client_id":' .. cjson.encode(cid)
       .. ',"uid":' .. (uid and cjson.encode(uid) or 'null') .. ',"groups":' .. groups_json
       .. ',"session":' .. session_json .. '}')
end

local function json_list(items)
  if #items == 0 then return '[]' end
  return cjson.encode(items)
end

local function json_session(pairs)
  -- The backend stores each session value as JSON already.
  local parts = {}
  for i = 1, #pairs, 2 do parts[#parts + 1] = cjson.encode(pairs[i]) .. ':' .. pairs[i + 1] end
  return '{' .. table.concat(parts, ',') .. '}'
end

local function result()
  return {made, dropped}
end

if op == 'bound' then
  -- A client registered, was bound or unbound: compare with what we saw.
  -- ARGV[8]: the uid it was bound to when the hook ran ('' for an unbind).
  local cid, hooked = ARGV[7], ARGV[8]
  local uid = redis.call('GET', P .. 'cu:' .. cid)
  local old = redis.call('HGET', E .. 'cu', cid)
  if uid then redis.call('HSET', E .. 'cu', cid, uid) else redis.call('HDEL', E .. 'cu', cid) end
  if old and old ~= uid then touch_uid(old, false) end
  if hooked ~= '' and hooked ~= uid and redis.call('HEXISTS', E .. 'on', hooked) == 0 and not deferring() then
    -- Bound and gone (or rebound) before this ran: the uid had a connection
    -- for a moment, so it was online; offline follows after the grace.
    redis.call('HSET', E .. 'on', hooked, 1)
    emit('uid_online', 'uid', hooked)
    touch_uid(hooked, false)
  end
  if uid then touch_uid(uid, false) end
  return result()

elseif op == 'group' then
  for i = 7, #ARGV do touch_group(ARGV[i]) end
  return result()

elseif op == 'closed' then
  -- ARGV: cid, uid or '', groups JSON, session JSON, assume ('1': replayed
  -- after Redis was away; the uid it had was online then), then the groups.
  local cid, uid = ARGV[7], ARGV[8]
  if uid == '' then uid = nil end
  closed(cid, uid, ARGV[9], ARGV[10])
  local old = redis.call('HGET', E .. 'cu', cid)
  redis.call('HDEL', E .. 'cu', cid)
  if old and old ~= uid then touch_uid(old, false) end
  local recheck = redis.call('SISMEMBER', P .. 'clients', cid) == 1
  if uid then
    if ARGV[11] == '1' and redis.call('SCARD', P .. 'u:' .. uid) == 0 then redis.call('HSET', E .. 'on', uid, 1) end
    touch_uid(uid, false)
    -- Still listed: the backend departs it later (a resync after an outage);
    -- look again then rather than never.
    if recheck then redis.call('ZADD', E .. 'due', now + grace, 'u:' .. uid) end
  end
  for i = 12, #ARGV do
    touch_group(ARGV[i])
    if recheck then redis.call('ZADD', E .. 'due', now + 1, 'g:' .. ARGV[i]) end
  end
  return result()

elseif op == 'reaping' then
  -- Before a dead node's clients are departed: their client_closed, and
  -- what to look at once they are gone.
  local dead = ARGV[7]
  local rd = E .. 'rd:' .. dead
  for _, cid in ipairs(redis.call('SMEMBERS', P .. 'reap:' .. dead)) do
    if redis.call('SISMEMBER', P .. 'clients', cid) == 1 then
      local uid = redis.call('GET', P .. 'cu:' .. cid)
      local groups = redis.call('SMEMBERS', P .. 'cg:' .. cid)
      closed(cid, uid, json_list(groups), json_session(redis.call('HGETALL', P .. 's:' .. cid)))
      if uid then redis.call('SADD', rd, 'u:' .. uid) end
      for _, g in ipairs(groups) do redis.call('SADD', rd, 'g:' .. g) end
    end
    local old = redis.call('HGET', E .. 'cu', cid)
    if old then redis.call('SADD', rd, 'u:' .. old) end
  end
  return result()

elseif op == 'reaped' then
  local dead = ARGV[7]
  local rd = E .. 'rd:' .. dead
  for _, member in ipairs(redis.call('SMEMBERS', rd)) do touch(member, false) end
  redis.call('DEL', rd)
  return result()

elseif op == 'settle' then
  -- What is due: offline graces that ran out, deferred online checks.
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', E .. 'due', '-inf', now, 'LIMIT', 0, 5000)) do
    redis.call('ZREM', E .. 'due', member)
    touch(member, true)
  end
  return result()

elseif op == 'epoch' then
  -- This Redis incarnation's id, made on first use (first start, or Redis
  -- came back empty). Nodes contribute their state once per incarnation.
  -- ARGV[7] is '1' when the asking node knew an earlier incarnation (Redis
  -- lost its state: hold online checks back a node timeout, until every node
  -- is back in `nodes`), '0' on a first start (only wait for the nodes listed).
  local id = redis.call('HGET', E .. 'epoch', 'id')
  if not id then
    id = token
    local at = now
    if ARGV[7] ~= '1' then at = now - window / 2 end
    redis.call('HSET', E .. 'epoch', 'id', id, 'at', string.format('%.3f', at))
    redis.call('DEL', E .. 'contrib')
  end
  return id

elseif op == 'contribute' then
  -- ARGV: node, epoch id, then 'u:UID' / 'g:G' members the node's clients
  -- held before Redis lost its state (the app was told of them): mark them
  -- silently, so the refill tells the app nothing, and look at each again
  -- after the grace, so one that left meanwhile goes offline (or vacated).
  local node, epoch = ARGV[7], ARGV[8]
  if redis.call('HGET', E .. 'epoch', 'id') ~= epoch then return 0 end
  for i = 9, #ARGV do
    local member = ARGV[i]
    local kind, name = string.sub(member, 1, 1), string.sub(member, 3)
    if kind == 'u' then redis.call('HSET', E .. 'on', name, 1) else redis.call('SADD', E .. 'grp', name) end
    redis.call('ZADD', E .. 'due', 'NX', now + grace, member)
  end
  redis.call('SADD', E .. 'contrib', node)
  return 1

elseif op == 'lead' then
  -- Hold (or take) the sender lease: one node sends at a time, in queue order.
  local node, ttl = ARGV[7], ARGV[8]
  local holder = redis.call('GET', E .. 'sender')
  if holder == node or not holder then
    redis.call('SET', E .. 'sender', node, 'PX', ttl)
    return 1
  end
  return 0

elseif op == 'append' then
  -- Events made by the node itself (client_message): whole JSON documents.
  for i = 7, #ARGV do append(ARGV[i]) end
  return result()

elseif op == 'resign' then
  if redis.call('GET', E .. 'sender') == ARGV[7] then redis.call('DEL', E .. 'sender') end
  return 1
end
return redis.error_reply('unknown events operation ' .. tostring(op))
"""
