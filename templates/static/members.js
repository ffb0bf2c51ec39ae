// The member menu: click a member for "Message privately" and, for the
// room's owner, "Mute…" or "Unmute" and "Ban…" or "Unban", whichever the
// member's state calls for (POST /rooms/<id>/mute|ban|unmute|unban). The
// owner's page knows who is muted or banned from /bind's answer
// (`restrictions`) and keeps it live from the banned / muted / unbanned /
// unmuted frames, which the owner hears too, with the member's uid.
// Also what this page does when it is banned or muted itself.
"use strict";

window.webchat = window.webchat || {};

// options: roomId, myUid, owner, setTarget({uid, name}), notice(text), list
// (the messages: a click on an author opens the menu too),
// composer (the form: disabled while muted or banned), stop() (stop
// reconnecting: we are banned), memberList (the <ul> of who is online, in the
// sidebar or the phone's drawer), counts (elements showing how many).
webchat.members = function (options) {
  const el = webchat.el;
  const DURATIONS = [["10 minutes", 10], ["1 hour", 60], ["1 day", 1440], ["For good", null]];
  const menu = el("div", "member-menu");
  menu.id = "member-menu";
  menu.setAttribute("role", "menu");
  menu.hidden = true;
  document.body.append(menu);
  let openFor = null; // the uid whose menu is open
  let openMember = null; // {uid, name} of that menu
  let choosing = false; // the menu shows durations (Mute… → 10 minutes, …)

  // Who is muted or banned in this room (for the owner's menu):
  // uid → {muted: until, banned: until}, `until` an ISO time or null for good.
  // An ended one needs no frame: it is simply past its time when the menu opens.
  const restricted = new Map();

  function active(uid, kind) {
    const entry = restricted.get(String(uid));
    if (!entry || !(kind in entry)) return false;
    return entry[kind] === null || Date.parse(entry[kind]) > Date.now();
  }

  // An open menu (not its durations) shows the member's state as it now is.
  function refreshOpen(uid) {
    if (openFor === null || menu.hidden || choosing || (uid !== undefined && openFor !== uid)) return;
    fill(openMember);
    menu.querySelector("button").focus();
  }

  // Record a change (until undefined: lifted); an open menu for them follows.
  function note(uid, kind, until) {
    uid = String(uid);
    const entry = Object.assign({}, restricted.get(uid));
    if (until === undefined) delete entry[kind];
    else entry[kind] = until;
    restricted.set(uid, entry);
    refreshOpen(uid);
  }

  // /bind's answer to the owner: [{uid, kind: "banned"|"muted", until}], the whole truth.
  function setRestrictions(list) {
    restricted.clear();
    for (const row of Array.isArray(list) ? list : []) {
      if (row && (row.kind === "banned" || row.kind === "muted")) note(row.uid, row.kind, row.until || null);
    }
    refreshOpen(); // lifted while we were away: no entry is left to say so
  }

  function item(label, action, className) {
    const button = el("button", "menu-item" + (className ? " " + className : ""), label);
    button.type = "button";
    button.setAttribute("role", "menuitem");
    button.addEventListener("click", action);
    return button;
  }

  function close() {
    menu.hidden = true;
    menu.replaceChildren();
    openFor = null;
    openMember = null;
    choosing = false;
  }

  async function moderate(action, member, minutes) {
    close();
    const body = { uid: member.uid };
    if (minutes) body.minutes = minutes;
    const result = await webchat.request("POST", "/rooms/" + options.roomId + "/" + action, body);
    if (!result.ok) {
      options.notice("Could not " + action + " " + member.name + ": " + (result.data.error || "error " + result.status));
      return;
    }
    const words = { ban: "banned", mute: "muted", unban: "unbanned", unmute: "unmuted" };
    // The answer is the truth even if its push is lost: the menu follows it now.
    if (action === "ban" || action === "mute") note(member.uid, words[action], result.data.until || null);
    else note(member.uid, words[action].slice(2), undefined);
    let text = member.name + " is " + words[action];
    if (action === "ban" || action === "mute") text += minutes ? " until " + new Date(result.data.until).toLocaleString() : " for good";
    options.notice(text);
  }

  function durations(action, member) {
    choosing = true;
    menu.replaceChildren(el("div", "menu-title", (action === "ban" ? "Ban " : "Mute ") + member.name + " for…"));
    for (const [label, minutes] of DURATIONS) {
      menu.append(item(label, function () { moderate(action, member, minutes); }, action + "-for"));
    }
    menu.append(item("Cancel", close, "menu-cancel"));
    menu.querySelector("button").focus();
  }

  function place(anchor) {
    const rect = anchor.getBoundingClientRect();
    const width = Math.min(220, window.innerWidth - 16);
    menu.style.width = width + "px";
    menu.style.left = Math.max(8, Math.min(rect.left, window.innerWidth - width - 8)) + "px";
    menu.style.top = Math.min(rect.bottom + 4, window.innerHeight - 240) + "px";
  }

  // "until 16:05" today, "until 3 Mar, 16:05" another day, or "for good".
  function untilText(until) {
    if (until === null) return "for good";
    const date = new Date(until);
    const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (date.toDateString() === new Date().toDateString()) return "until " + time;
    return "until " + date.toLocaleDateString([], { day: "numeric", month: "short" }) + ", " + time;
  }

  // The menu's items for a member: for the owner, the actions their state allows.
  function fill(member) {
    menu.replaceChildren(el("div", "menu-title", member.name));
    if (options.owner) {
      const entry = restricted.get(String(member.uid)) || {};
      const state = [];
      if (active(member.uid, "muted")) state.push("Muted " + untilText(entry.muted));
      if (active(member.uid, "banned")) state.push("Banned " + untilText(entry.banned));
      if (state.length) menu.append(el("div", "menu-status", state.join(" · ")));
    }
    menu.append(item("Message privately", function () { close(); options.setTarget(member); }, "menu-private"));
    if (!options.owner) return;
    menu.append(active(member.uid, "muted")
      ? item("Unmute", function () { moderate("unmute", member); }, "menu-unmute")
      : item("Mute…", function () { durations("mute", member); }, "menu-mute"));
    menu.append(active(member.uid, "banned")
      ? item("Unban", function () { moderate("unban", member); }, "menu-unban")
      : item("Ban…", function () { durations("ban", member); }, "menu-ban"));
  }

  // Open the menu for a member's button.
  function open(anchor, member) {
    if (openFor === member.uid && !menu.hidden) { close(); return; }
    close();
    openFor = member.uid;
    openMember = member;
    fill(member);
    place(anchor);
    menu.hidden = false;
    menu.querySelector("button").focus();
  }

  // A message's author opens the same menu: the way to a member when the list
  // is out of sight (narrow screens) or they have left.
  if (options.list) {
    options.list.addEventListener("click", function (event) {
      const author = event.target.closest(".message .author");
      const item = author && author.closest("li.message");
      if (!item || !item.dataset.uid || item.dataset.uid === options.myUid || !author.textContent) return;
      open(author, { uid: item.dataset.uid, name: author.textContent });
    });
  }

  document.addEventListener("click", function (event) {
    // A click that replaced the menu's items (Mute… → durations) is no click outside.
    if (!event.target.isConnected) return;
    if (!menu.hidden && !menu.contains(event.target) && !event.target.closest("button.member, .message .author")) close();
  });
  document.addEventListener("keydown", function (event) { if (event.key === "Escape") close(); });

  function until(frame) {
    return frame.until ? " until " + new Date(frame.until).toLocaleString() : " for good";
  }

  function setBlocked(text) {
    let banner = document.getElementById("blocked-banner");
    if (!text) { if (banner) banner.remove(); options.composer.classList.remove("blocked"); return; }
    if (!banner) {
      banner = el("p", "blocked-banner");
      banner.id = "blocked-banner";
      banner.setAttribute("role", "status");
      options.composer.prepend(banner);
    }
    banner.textContent = text;
    options.composer.classList.add("blocked");
  }

  // banned / muted / unbanned / unmuted frames in this room: about this user
  // (its uid, or none), or, on the owner's page, about a member.
  function receive(frame) {
    if (frame.room_id !== options.roomId) return;
    if (frame.uid !== undefined && frame.uid !== null && String(frame.uid) !== options.myUid) {
      const lifted = frame.type.startsWith("un");
      note(frame.uid, lifted ? frame.type.slice(2) : frame.type, lifted ? undefined : frame.until || null);
      return;
    }
    switch (frame.type) {
      case "banned":
        setBlocked("You are banned from this room" + until(frame) + ".");
        options.stop();
        break;
      case "muted":
        setBlocked("You are muted in this room" + until(frame) + ": you can read, not post.");
        break;
      case "unmuted":
        setBlocked("");
        options.notice("You can post again.");
        break;
      case "unbanned":
        // Back in: join the room again from scratch.
        window.location.reload();
        break;
    }
  }

  // A 403 from /bind or a post: show why (the answer says banned or muted, and until when).
  function refused(data) {
    if (!data || (data.kind !== "banned" && data.kind !== "muted")) return false;
    setBlocked(data.error.charAt(0).toUpperCase() + data.error.slice(1) + ".");
    if (data.kind === "banned") options.stop();
    return true;
  }

  // Muted when the page was loaded: say so before the first post is refused.
  if (document.body.dataset.mutedUntil !== undefined) {
    receive({ type: "muted", room_id: options.roomId, until: document.body.dataset.mutedUntil || null });
  }

  // The member list: each member opens the menu (in the phone's drawer too,
  // where its "Message privately" closes the drawer through setTarget).
  // members {uid: name}, avatars {uid: url}, target {uid} or null.
  function render(members, avatars, target) {
    const entries = Object.entries(members || {}).sort(function (a, b) { return a[1].localeCompare(b[1]); });
    options.memberList.replaceChildren();
    for (const [uid, name] of entries) {
      const row = el("li");
      const button = el("button", "member", null);
      button.type = "button";
      button.dataset.uid = uid;
      button.append(webchat.render.avatar(uid, name, avatars[uid], true), el("span", "member-name", name));
      if (uid === options.myUid) {
        button.append(el("span", "you", "you"));
        button.disabled = true;
      } else {
        button.title = name + ": message privately" + (options.owner ? ", mute or ban" : "");
        button.setAttribute("aria-haspopup", "menu");
        button.addEventListener("click", function () { open(button, { uid, name }); });
      }
      if (target && target.uid === uid) button.classList.add("selected");
      row.append(button);
      options.memberList.append(row);
    }
    for (const count of options.counts) count.textContent = String(entries.length);
  }

  return { open, close, receive, refused, render, setRestrictions };
};
