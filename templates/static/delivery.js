// What a room page holds, and how it finds what it missed: docs/delivery.md's
// rule, kept apart from the page so it can be read (and followed by other
// clients, as tests/faults/page.py does) on its own.
//
// Every chat message carries `seq`, its number in its conversation (the room's
// public messages, or one pair of users' private ones): a hole in a
// conversation's seqs is a gap. A catch-up fetches every message after
// `cursor`; only a complete page of history moves the cursor, never a live
// frame or our own answer, because the messages before those may be the ones
// that were lost. Every message is shown once, by id.
"use strict";

window.webchat = window.webchat || {};

// options: roomId, myUid, show(msg) (put it on screen), update(msg) (optional:
// a held message given again with a change number), fetchAfter(cursor,
// limit) → {ok, status, data: {messages}} (GET /rooms/<id>/messages).
webchat.delivery = function (options) {
  const PAGE = 200;
  // A hole may be a frame still on its way (our own answer often beats the
  // pushes before it): give it this long to fill before fetching.
  const GAP_GRACE_MS = 300;
  const RETRY_MS = 1000;
  const RETRY_CAP_MS = 15000;
  const IDLE_ROUNDS = 3;

  const seen = new Set(); // ids shown
  let cursor = 0; // every message we may see with an id <= cursor is held
  let maxSeen = 0;
  // Per conversation ("all", or "to:<the other uid>"): head is the last seq
  // held with every one before it; pending holds later seqs (seq → id).
  const streams = new Map();
  let running = null; // the running catch-up's promise
  let again = false; // asked for again while one was running
  let gapTimer = null;
  let retryTimer = null;
  let retryDelay = RETRY_MS;

  function streamOf(msg) {
    if (msg.type !== "to") return "all";
    return "to:" + (String(msg.uid) === options.myUid ? String(msg.to_uid) : String(msg.uid));
  }

  function advance(stream) {
    while (stream.pending.has(stream.head + 1)) {
      stream.pending.delete(stream.head + 1);
      stream.head += 1;
    }
  }

  function noteSeq(msg) {
    if (typeof msg.seq !== "number") return; // stored before seqs existed
    const key = streamOf(msg);
    let stream = streams.get(key);
    if (!stream) {
      stream = { head: 0, pending: new Map() };
      streams.set(key, stream);
    }
    if (msg.seq > stream.head) stream.pending.set(msg.seq, msg.id);
    advance(stream);
  }

  // History is complete through `upTo`: what we hold up to there has no holes
  // (anything older than the first page we loaded is not ours to fill).
  function settle(upTo) {
    for (const stream of streams.values()) {
      for (const [seq, id] of stream.pending) {
        if (id <= upTo && seq > stream.head) stream.head = seq;
      }
      for (const seq of Array.from(stream.pending.keys())) {
        if (seq <= stream.head) stream.pending.delete(seq);
      }
      advance(stream);
    }
  }

  function hasGap() {
    for (const stream of streams.values()) if (stream.pending.size) return true;
    return false;
  }

  // Every message, fetched or live or our own answer, comes in here; once.
  function receive(msg) {
    // Private messages reach every tab of their two parties, whatever room it
    // shows: only this room's belong here.
    if (!msg || typeof msg.id !== "number" || msg.room_id !== options.roomId) return;
    if (seen.has(msg.id)) {
      // Held already; history may bring it edited or deleted since (edits.js).
      if (options.update && typeof msg.rev === "number") options.update(msg);
      return;
    }
    seen.add(msg.id);
    maxSeen = Math.max(maxSeen, msg.id);
    options.show(msg);
    noteSeq(msg);
  }

  // A pushed frame (or /say's 201): a hole it shows is fetched unless it fills.
  function receiveLive(msg) {
    receive(msg);
    if (hasGap() && gapTimer === null && running === null) {
      gapTimer = setTimeout(function () {
        gapTimer = null;
        if (hasGap()) catchUp();
      }, GAP_GRACE_MS);
    }
  }

  // One page after the cursor, through receive(); true once we are current.
  async function fetchPage() {
    const result = await options.fetchAfter(cursor, PAGE);
    if (!result.ok) throw new Error((result.data && result.data.error) || "error " + result.status);
    const messages = result.data.messages;
    messages.forEach(receive);
    if (messages.length) {
      const last = messages[messages.length - 1].id;
      settle(last);
      cursor = Math.max(cursor, last);
    }
    return messages.length < PAGE;
  }

  function pause(ms) {
    return new Promise(function (done) { setTimeout(done, ms); });
  }

  // Fetch everything after the cursor; one at a time: asked again while
  // running, it runs once more when done (what arrived meanwhile is fetched).
  // On reconnect, on a gap, on a 502 "stored, not pushed", on "resync".
  function catchUp() {
    if (running !== null) {
      again = true;
      return running;
    }
    if (gapTimer !== null) { clearTimeout(gapTimer); gapTimer = null; }
    running = (async function () {
      try {
        let idle = 0;
        do {
          again = false;
          const before = cursor;
          while (!(await fetchPage())) { /* next page */ }
          // A hole after a complete catch-up is a message committed after our
          // last read, its push still on its way: look again (not in a spin).
          // A hole history never fills (it cannot, if it keeps the rule) is
          // not waited on for ever.
          if (!again && hasGap()) {
            idle = cursor === before ? idle + 1 : 0;
            if (idle >= IDLE_ROUNDS) {
              settle(maxSeen);
            } else {
              if (idle) await pause(GAP_GRACE_MS);
              again = hasGap();
            }
          }
        } while (again);
        retryDelay = RETRY_MS;
      } catch (err) {
        // The web app did not answer: try again later; the cursor is unmoved.
        if (retryTimer === null) {
          retryTimer = setTimeout(function () { retryTimer = null; catchUp(); }, retryDelay);
          retryDelay = Math.min(retryDelay * 2, RETRY_CAP_MS);
        }
      } finally {
        running = null;
      }
    })();
    return running;
  }

  // The latest messages, as the page opens: the cursor starts at the last.
  function start(messages) {
    messages.forEach(receive);
    if (messages.length) {
      cursor = Math.max(cursor, messages[messages.length - 1].id);
      settle(cursor);
    }
  }

  return { receive, receiveLive, catchUp, start, has: function (id) { return seen.has(id); } };
};
