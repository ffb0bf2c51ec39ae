// Desktop notifications (the browser's Notification API) for private
// messages to you and messages that mention you, while this tab is hidden.
//
// Permission is asked only when the person clicks the bell, never on load
// (browsers penalise pages that ask unprompted, and it is rude). Once
// granted, the bell turns them off and on again for this browser
// (localStorage), since a page cannot take a permission back.
"use strict";

window.webchat = window.webchat || {};

// options: button, roomName, myUid, myName.
webchat.notify = function (options) {
  const button = options.button;
  const KEY = "webchat:notify";
  const supported = typeof window.Notification === "function";

  function enabled() {
    return supported && Notification.permission === "granted" && localStorage.getItem(KEY) !== "off";
  }

  function show() {
    if (!supported) {
      button.hidden = true;
      return;
    }
    button.hidden = false;
    const permission = Notification.permission;
    const on = enabled();
    button.classList.toggle("on", on);
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.title = permission === "denied"
      ? "Notifications are blocked for this site in your browser's settings"
      : on ? "Notifications on for private messages and mentions: click to turn off"
        : "Notify me of private messages and mentions";
    button.dataset.state = permission === "denied" ? "blocked" : on ? "on" : "off";
  }

  button.addEventListener("click", async function () {
    if (!supported) return;
    if (Notification.permission === "granted") {
      localStorage.setItem(KEY, enabled() ? "off" : "on");
    } else if (Notification.permission === "default") {
      const answer = await Notification.requestPermission();
      if (answer === "granted") localStorage.setItem(KEY, "on");
    }
    show();
  });

  // A message just shown: tell the person if it is for them and they are not looking.
  function consider(msg) {
    if (!enabled() || document.visibilityState !== "hidden") return;
    if (String(msg.uid) === options.myUid) return;
    const privately = msg.type === "to";
    const mentioned = msg.kind !== "image" && webchat.render.mentions(msg.content, options.myName);
    if (!privately && !mentioned) return;
    const title = privately ? msg.uname + " (private) · #" + options.roomName : msg.uname + " mentioned you in #" + options.roomName;
    const body = msg.kind === "image" ? "sent an image" : String(msg.content).slice(0, 200);
    try {
      const note = new Notification(title, { body: body, tag: "webchat-" + msg.id });
      note.addEventListener("click", function () {
        window.focus();
        note.close();
      });
    } catch (err) {
      // Some browsers (Android Chrome) allow notifications only from a service worker.
      return;
    }
  }

  show();
  return { consider, enabled };
};
