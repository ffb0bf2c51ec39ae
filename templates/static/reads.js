// Read positions (POST /rooms/<id>/read): what this user has read in the room,
// the unread count in the tab's title, and "seen" on our private messages.
//
// The position moves (never back) to the last message shown whenever the page
// is visible and scrolled to the bottom. Messages by others above it are
// unread; "read" frames move it when another tab of ours reads, and tell us
// when the recipient of our private messages has read them.
"use strict";

window.webchat = window.webchat || {};

// options: roomId, myUid, position (the stored one, from the page), list (the
// scrolling <ol>), rendered (Map id → <li>).
webchat.reads = function (options) {
  const SEND_EVERY_MS = 500;
  const baseTitle = document.title;
  let position = options.position || 0; // the last id read (stored or on its way)
  let sendTimer = null;
  let lastSent = 0;

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

  function send() {
    sendTimer = null;
    lastSent = Date.now();
    webchat.request("POST", "/rooms/" + options.roomId + "/read", { message_id: position });
  }

  // Read everything shown, if the reader can see it.
  function check() {
    if (document.visibilityState === "visible" && atBottom()) {
      let last = 0;
      for (const id of options.rendered.keys()) if (id > last) last = id;
      if (last > position) {
        position = last;
        // Throttled: a burst of messages is one request.
        if (sendTimer === null) sendTimer = setTimeout(send, Math.max(0, lastSent + SEND_EVERY_MS - Date.now()));
      }
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

  // After each message put in the list: once per burst (a page of history is one check).
  let checkQueued = false;
  function shown() {
    if (checkQueued) return;
    checkQueued = true;
    setTimeout(function () { checkQueued = false; check(); }, 0);
  }

  return { receive, decorate, shown, unread };
};
