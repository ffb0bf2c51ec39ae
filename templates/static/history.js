// The room's past and what arrives while you look elsewhere: older pages
// loaded as you scroll up (GET /rooms/<id>/messages?before=<oldest id>),
// keeping what you were reading in place; a "new messages ↓" pill when
// something arrives while you are scrolled up; a "missed while you were away"
// divider before what a reconnect's catch-up brought; the empty room's
// welcome and the beginning of the room.
//
// Older pages go through delivery.start() like the first page: each message
// once (dedup by id), and what they hold is below the delivery cursor, so
// they never move it (docs/delivery.md).
"use strict";

window.webchat = window.webchat || {};

// options: list (the <ol>), roomId, roomName, delivery, pill (button).
webchat.history = function (options) {
  const el = webchat.el;
  const list = options.list;
  const pill = options.pill;
  const PAGE = 50;
  // Start fetching this far from the top, so a page is usually there before you reach it.
  const LOAD_WHEN_PX = 400;
  const AT_BOTTOM_PX = 80;
  const RETRY_MS = 3000;

  let oldest = null; // the smallest message id shown
  let loading = false;
  let exhausted = false; // the room's first message is shown
  let started = false; // the first page is in
  let failedAt = 0;
  let unseen = 0; // arrived while scrolled up
  let away = null; // {first: <li>, count} while a reconnect's catch-up runs
  let emptyState = null;

  function atBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < AT_BOTTOM_PX;
  }

  function toBottom() {
    list.scrollTop = list.scrollHeight;
    hidePill();
  }

  function hidePill() {
    unseen = 0;
    pill.hidden = true;
  }

  function showEmpty() {
    if (emptyState || oldest !== null) return;
    emptyState = el("li", "empty-state");
    emptyState.append(
      el("span", "empty-icon", "💬"),
      el("strong", null, "No messages in #" + options.roomName + " yet"),
      el("span", "muted", "Say hello: everyone in the room sees it. Pick someone on the member list to write privately."),
    );
    list.prepend(emptyState);
  }

  function markBeginning() {
    exhausted = true;
    if (oldest === null || list.querySelector(".history-start")) return;
    const start = el("li", "history-start", "This is the beginning of #" + options.roomName + ".");
    list.prepend(start);
  }

  // room.js calls this for every message it places. `isNew`: later than
  // everything shown before it (not an older page).
  function noteShown(msg, item, wasAtBottom, isNew) {
    oldest = oldest === null ? msg.id : Math.min(oldest, msg.id);
    if (emptyState) { emptyState.remove(); emptyState = null; }
    if (!isNew || !started) return;
    if (away) {
      away.count += 1;
      if (!away.first || Number(away.first.dataset.id) > msg.id) away.first = item;
    }
    if (!wasAtBottom) {
      unseen += 1;
      pill.textContent = (unseen === 1 ? "1 new message" : unseen + " new messages") + " ↓";
      pill.hidden = false;
    }
  }

  // The first page (the latest messages) is in: start at the bottom.
  function start(count, pageSize) {
    started = true;
    if (count < pageSize) markBeginning();
    if (count === 0) showEmpty();
    toBottom();
    maybeLoad();
  }

  async function loadOlder() {
    if (loading || exhausted || oldest === null || Date.now() - failedAt < RETRY_MS) return;
    loading = true;
    const spinner = el("li", "history-loading", "Loading earlier messages…");
    list.prepend(spinner);
    try {
      const result = await webchat.request(
        "GET", "/rooms/" + options.roomId + "/messages?before=" + oldest + "&limit=" + PAGE,
      );
      if (!result.ok) {
        failedAt = Date.now(); // the next scroll after a moment tries again
        return;
      }
      const messages = result.data.messages;
      spinner.remove();
      // Keep the message you are reading where it is: the first one in view
      // (its text: its date separator may go, now that its day goes on above).
      const anchor = firstInView();
      const before = anchor ? anchor.getBoundingClientRect().top : 0;
      options.delivery.start(messages);
      if (anchor) list.scrollTop += anchor.getBoundingClientRect().top - before;
      if (messages.length < PAGE) markBeginning();
    } finally {
      spinner.remove();
      loading = false;
    }
    maybeLoad();
  }

  function firstInView() {
    const top = list.getBoundingClientRect().top;
    for (const item of list.querySelectorAll("li.message")) {
      if (item.getBoundingClientRect().bottom > top) return item.querySelector(".message-body");
    }
    return null;
  }

  // Near the top (or the list is too short to scroll at all): fetch more.
  function maybeLoad() {
    if (started && list.scrollTop < LOAD_WHEN_PX) loadOlder();
  }

  // A reconnect's catch-up begins / has ended: what it brought gets a divider.
  function awayStart() {
    away = { first: null, count: 0 };
  }

  function awayEnd() {
    const finished = away;
    away = null;
    if (!finished || !finished.count || !finished.first.isConnected) return;
    for (const old of list.querySelectorAll(".missed-divider")) old.remove();
    const text = finished.count === 1 ? "1 message while you were away" : finished.count + " messages while you were away";
    const divider = el("li", "missed-divider", text);
    list.insertBefore(divider, finished.first);
  }

  list.addEventListener("scroll", function () {
    if (atBottom()) hidePill();
    maybeLoad();
  }, { passive: true });
  pill.addEventListener("click", toBottom);

  return { noteShown, start, loadOlder, awayStart, awayEnd, atBottom, toBottom };
};
