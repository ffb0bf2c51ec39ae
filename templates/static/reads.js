// Read positions (POST /rooms/<id>/read): what this user has read in the room,
// the unread count in the tab's title, and "seen" on our private messages.
//
// The position moves (never back) to the last message shown whenever the page
// is visible and scrolled to the bottom. Messages by others above it are
// unread; "read" frames move it when another tab of ours reads, and tell us
// when the recipient of our private messages has read them.
//
// The title follows the position at once; the server hears of it at most once
// per READ_EVERY_MS, at the end of that time (a burst of messages is one
// request), and only if it moved past what the server has. Leaving or hiding
// the tab sends it at once, so what the lobby and the other tabs show as
// unread is right afterwards.
"use strict";

window.webchat = window.webchat || {};

// options: roomId, myUid, position (the stored one, from the page), list (the
// scrolling <ol>), rendered (Map id → <li>).
webchat.reads = function (options) {
  // Every member of a room is shown each message within milliseconds, and
  // each read used to follow at once: a room of 100 was 100 requests per
  // message in one burst (docs/benchmarks.md, the room item). A read now waits
  // READ_EVERY_MS after the position first moves, plus up to READ_SPREAD_MS at
  // random so that the pages that saw one message do not all send in the same
  // instant: at most one read a second per page, whatever the room's pace,
  // and others see "seen" (and the lobby the count) 1-2 s after the reading.
  // bench/room_members.py follows the same rule with the same numbers.
  const READ_EVERY_MS = 1000;
  const READ_SPREAD_MS = 1000;
  const baseTitle = document.title;
  let position = options.position || 0; // the last id read here
  let stored = position; // the last id the server has (or is being sent)
  let sendTimer = null;

  function atBottom() {
    const list = options.list;
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function unread() {
    let count = 0;
    for (const [id, item] of options.rendered) {
      if (id > position && item.dataset.uid !== options.myUid && !item.classList.contains("deleted")) count += 1;
    }
    return count;
  }

  function updateTitle() {
    const count = unread();
    document.title = count ? "(" + (count > 99 ? "99+" : count) + ") " + baseTitle : baseTitle;
  }

  function request(leaving) {
    const before = stored;
    const sent = position;
    stored = sent;
    const url = "/rooms/" + options.roomId + "/read";
    if (!leaving) {
      webchat.request("POST", url, { message_id: sent }).then(function (result) {
        // Not stored (no network, a server error): the next check sends it again.
        if ((result.status === 0 || result.status >= 500) && stored === sent) stored = before;
      });
      return;
    }
    // The page may be gone before an answer comes: keepalive lets the request
    // outlive it. The CSRF token goes in its header as webchat.request sends it.
    fetch(url, {
      method: "POST",
      keepalive: true,
      credentials: "same-origin",
      headers: { "Accept": "application/json", "Content-Type": "application/json", "X-CSRFToken": webchat.csrfToken() },
      body: JSON.stringify({ message_id: sent }),
    }).catch(function () {});
  }

  // Send what the server does not have yet: now when leaving, else at the end of the wait.
  function send(leaving) {
    if (position <= stored) return;
    if (leaving) {
      if (sendTimer !== null) clearTimeout(sendTimer);
      sendTimer = null;
      request(true);
    } else if (sendTimer === null) {
      sendTimer = setTimeout(function () { sendTimer = null; if (position > stored) request(false); },
        READ_EVERY_MS + Math.random() * READ_SPREAD_MS);
    }
  }

  // Read everything shown, if the reader can see it.
  function check() {
    if (document.visibilityState === "visible" && atBottom()) {
      let last = 0;
      for (const id of options.rendered.keys()) if (id > last) last = id;
      if (last > position) position = last;
      send(false);
    } else if (document.visibilityState === "hidden") {
      send(true);
    }
    updateTitle();
  }

  // "seen" goes right after the time, before the (hover-only) actions.
  function addSeen(item) {
    const meta = item.querySelector(".meta");
    if (meta && !meta.querySelector(".seen")) meta.insertBefore(webchat.el("span", "seen", "seen"), meta.querySelector(".message-actions"));
  }

  function markSeen(toUid, upTo) {
    for (const [id, item] of options.rendered) {
      if (id <= upTo && item.dataset.toUid === toUid && !item.classList.contains("deleted")) addSeen(item);
    }
  }

  // A "read" frame: ours from another tab, or the recipient of our private messages.
  function receive(frame) {
    if (frame.room_id !== options.roomId || typeof frame.message_id !== "number") return;
    if (String(frame.uid) === options.myUid) {
      position = Math.max(position, frame.message_id);
      stored = Math.max(stored, frame.message_id); // the server has it: nothing to send for it
      updateTitle();
    } else {
      markSeen(String(frame.uid), frame.message_id);
    }
  }

  // Called for each message as it is put in the list (before it is placed).
  function decorate(item, msg) {
    if (msg.type === "to" && String(msg.uid) === options.myUid && msg.to_uid) {
      item.dataset.toUid = String(msg.to_uid);
      if (msg.seen) addSeen(item);
    }
  }

  options.list.addEventListener("scroll", check, { passive: true });
  document.addEventListener("visibilitychange", check);
  window.addEventListener("focus", check);
  // Leaving the page (a link, closing the tab, going back): what was read is sent now.
  window.addEventListener("pagehide", function () { send(true); });

  // After each message put in the list: once per burst (a page of history is one check).
  let checkQueued = false;
  function shown() {
    if (checkQueued) return;
    checkQueued = true;
    setTimeout(function () { checkQueued = false; check(); }, 0);
  }

  return { receive, decorate, shown, unread };
};
