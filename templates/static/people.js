// The lobby's people list: who is online site-wide, and when the others were last seen.
// The list loads from GET /people; then the page's WebSocket to the push server
// (the one lobby.js uses too; bound by POST /people/watch, so an open lobby
// counts as online) brings each change as {"type":"presence", uid, name,
// online, last_seen}. On reconnect it reloads.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const section = document.getElementById("people");
  const list = document.getElementById("people-list");
  if (!section || !list) return;
  const el = webchat.el;
  const people = new Map();

  function ago(iso) {
    if (!iso) return "never seen";
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 60) return "last seen just now";
    if (seconds < 3600) return "last seen " + Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return "last seen " + Math.floor(seconds / 3600) + " h ago";
    return "last seen " + new Date(iso).toLocaleDateString();
  }

  function render() {
    const sorted = Array.from(people.values()).sort(function (a, b) {
      if (a.online !== b.online) return a.online ? -1 : 1;
      return (b.last_seen || "").localeCompare(a.last_seen || "") || a.name.localeCompare(b.name);
    });
    list.replaceChildren();
    for (const person of sorted) {
      const item = el("li", "person" + (person.online ? " online" : ""));
      item.dataset.uid = person.uid;
      item.dataset.online = person.online ? "1" : "0";
      item.append(el("span", "person-dot"), el("span", "person-name", person.name),
                  el("span", "person-seen muted", person.online ? "online" : ago(person.last_seen)));
      list.append(item);
    }
  }

  // Presence frames that came while a load was on its way. The answer may have
  // been read before their change was stored (the web app stores, then
  // pushes): they are applied again on top of it, or a stale answer would undo
  // them (someone who just came online would show offline until they next changed).
  let arrivedDuringLoad = null;

  async function load() {
    const arrived = [];
    arrivedDuringLoad = arrived;
    const result = await webchat.request("GET", "/people");
    if (arrivedDuringLoad === arrived) arrivedDuringLoad = null;
    if (!result.ok || !Array.isArray(result.data.people)) return;
    people.clear();
    for (const person of result.data.people) people.set(person.uid, person);
    for (const frame of arrived) people.set(frame.uid, frame);
    render();
  }

  // One socket with the unread counts (lobby.js): webchat.sharedSocket, common.js.
  webchat.sharedSocket(section.dataset.wsUrl).subscribe({
    bind: async function (clientId) {
      return (await webchat.request("POST", "/people/watch", { client_id: clientId })).ok;
    },
    bound: load,
    frame: function (frame) {
      if (frame.type === "presence" && typeof frame.uid === "string") {
        people.set(frame.uid, frame);
        if (arrivedDuringLoad !== null) arrivedDuringLoad.push(frame);
        render();
      }
    },
  });

  load();
  // "3 min ago" keeps counting without any event.
  setInterval(render, 30000);
});
