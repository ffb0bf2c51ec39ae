// The typing indicator (POST /typing): tell the room, at most every few
// seconds, while the user types; show "alice is typing…" for a few seconds
// after the last word from her. Nothing to send when typing stops: it expires.
"use strict";

window.webchat = window.webchat || {};

// options: roomId, myUid, input (the textarea), indicator (the element that
// shows it), target() → {uid} while writing privately, else null.
webchat.typing = function (options) {
  const SEND_EVERY_MS = 3000; // the page's throttle: one /typing per this
  const SHOW_MS = 5000; // longer than SEND_EVERY_MS, so a steady typist stays shown
  const typists = new Map(); // uid → {name, timer}
  const QUIET_DEFAULT_S = 60; // after a 429 without Retry-After
  let lastSent = 0;
  let quietUntil = 0; // no typing notices before this (a 429's Retry-After)

  function render() {
    const names = Array.from(typists.values(), function (t) { return t.name; });
    let text = "";
    if (names.length === 1) text = names[0] + " is typing…";
    else if (names.length === 2) text = names[0] + " and " + names[1] + " are typing…";
    else if (names.length > 2) text = "Several people are typing…";
    options.indicator.textContent = text;
    options.indicator.hidden = !text;
  }

  function stop(uid) {
    const typist = typists.get(String(uid));
    if (!typist) return;
    clearTimeout(typist.timer);
    typists.delete(String(uid));
    render();
  }

  // A typing frame from the push server.
  function receive(frame) {
    if (frame.room_id !== options.roomId || String(frame.uid) === options.myUid) return;
    const uid = String(frame.uid);
    const old = typists.get(uid);
    if (old) clearTimeout(old.timer);
    typists.set(uid, { name: String(frame.uname || "someone"), timer: setTimeout(function () { stop(uid); }, SHOW_MS) });
    render();
  }

  options.input.addEventListener("input", function () {
    const now = Date.now();
    if (!options.input.value.trim() || now - lastSent < SEND_EVERY_MS || now < quietUntil) return;
    lastSent = now;
    const body = { room_id: options.roomId };
    const target = options.target();
    if (target) body.to_uid = target.uid;
    // Best effort: a refused or lost one only means the others see nothing.
    webchat.request("POST", "/typing", body).then(function (result) {
      // Past the typing limit (web_app/limits.py): say nothing more until the
      // window ends, rather than be refused at every keystroke.
      if (result.status === 429) {
        const wait = Number(result.data && result.data.retry_after);
        quietUntil = Date.now() + (wait > 0 ? wait : QUIET_DEFAULT_S) * 1000;
      }
    });
  });

  return {
    receive,
    // Their message arrived: they have stopped typing it.
    messageFrom: stop,
    // We sent ours: the next keystroke may say so again at once.
    sent: function () { lastSent = 0; },
  };
};
