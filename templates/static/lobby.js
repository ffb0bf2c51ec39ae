// The lobby: create a room, and keep the online counts fresh.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const form = document.getElementById("create-room");
  const error = document.getElementById("form-error");
  const list = document.getElementById("room-list");
  const empty = document.getElementById("no-rooms");
  const el = webchat.el;

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

  function render(rooms) {
    list.replaceChildren();
    for (const room of rooms) {
      const item = el("li", "room-item");
      item.dataset.roomId = room.id;
      const link = el("a");
      link.href = "/rooms/" + encodeURIComponent(room.id);
      link.append(el("span", "room-hash", "#"), el("span", "room-name", room.name));
      const badge = el("span", "online-badge", room.online === null ? "–" : room.online + " online");
      badge.dataset.online = room.online === null ? "" : room.online;
      link.append(badge);
      item.append(link);
      list.append(item);
    }
    empty.hidden = rooms.length > 0;
  }

  async function refresh() {
    const result = await webchat.request("GET", "/rooms");
    if (result.ok && Array.isArray(result.data.rooms)) render(result.data.rooms);
  }

  setInterval(refresh, 10000);
});
