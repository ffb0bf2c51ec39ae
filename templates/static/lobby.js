// The lobby: create a room, keep the online counts fresh, and keep each
// room's unread count live (the page's WebSocket, bound by POST /lobby/bind,
// hears every listed room's new messages; our own "read" frames mean a tab of
// ours read). The socket is the one people.js uses too.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const form = document.getElementById("create-room");
  const error = document.getElementById("form-error");
  const list = document.getElementById("room-list");
  const empty = document.getElementById("no-rooms");
  const el = webchat.el;
  const myUid = document.body.dataset.uid;
  const wsUrl = document.body.dataset.wsUrl;

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    webchat.showError(error, "");
    const result = await webchat.request("POST", "/rooms", { name: form.elements.name.value });
    if (!result.ok) {
      webchat.showError(error, webchat.errorMessage(result, "could not create the room"));
      return;
    }
    window.location.assign("/rooms/" + encodeURIComponent(result.data.id));
  });

  function setUnread(badge, count) {
    badge.dataset.unread = String(count);
    badge.textContent = count > 99 ? "99+" : String(count);
    badge.hidden = !count;
  }

  function render(rooms) {
    list.replaceChildren();
    for (const room of rooms) {
      const item = el("li", "room-item");
      item.dataset.roomId = room.id;
      const link = el("a");
      link.href = "/rooms/" + encodeURIComponent(room.id);
      link.append(el("span", "room-hash", "#"), el("span", "room-name", room.name));
      const unread = el("span", "unread-badge");
      setUnread(unread, room.unread || 0);
      const badge = el("span", "online-badge", room.online === null ? "–" : room.online + " online");
      badge.dataset.online = room.online === null ? "" : room.online;
      link.append(unread, badge);
      item.append(link);
      list.append(item);
    }
    empty.hidden = rooms.length > 0;
  }

  // A /rooms answer read before a live message was stored would put its count
  // back to the old one: a frame counted while a refresh is in flight asks for
  // one more refresh once it lands (the server's counts are exact by then).
  let refreshing = 0;
  let countedMeanwhile = false;

  async function refresh() {
    refreshing += 1;
    const result = await webchat.request("GET", "/rooms");
    refreshing -= 1;
    if (result.ok && Array.isArray(result.data.rooms)) render(result.data.rooms);
    if (countedMeanwhile && refreshing === 0) {
      countedMeanwhile = false;
      refreshSoon();
    }
  }

  setInterval(refresh, 10000);

  // -- live unread counts ------------------------------------------------------

  const counted = new Set(); // message ids already counted (a frame may come twice)
  let refreshTimer = null;

  function refreshSoon() {
    if (refreshTimer === null) refreshTimer = setTimeout(function () { refreshTimer = null; refresh(); }, 300);
  }

  function onMessage(frame) {
    if (String(frame.uid) === myUid || counted.has(frame.id)) return;
    if (frame.type === "to" && String(frame.to_uid) !== myUid) return;
    counted.add(frame.id);
    if (refreshing) countedMeanwhile = true;
    const badge = list.querySelector('.room-item[data-room-id="' + Number(frame.room_id) + '"] .unread-badge');
    if (badge) setUnread(badge, Number(badge.dataset.unread || 0) + 1);
  }

  // One socket with the people list (people.js): webchat.sharedSocket, common.js.
  webchat.sharedSocket(wsUrl).subscribe({
    bind: async function (clientId) {
      return (await webchat.request("POST", "/lobby/bind", { client_id: clientId })).ok;
    },
    bound: refresh,
    frame: function (frame) {
      if (frame.type === "all" || frame.type === "to") {
        onMessage(frame);
      } else if (frame.type === "read" || frame.type === "delete" || frame.type === "resync") {
        // We read somewhere (or a message went): the server has the exact counts.
        refreshSoon();
      }
    },
  });
});
