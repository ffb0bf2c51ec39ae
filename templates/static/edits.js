// Editing and deleting messages (PATCH / DELETE /messages/<id>), live and
// after time away.
//
// Every edit or delete carries the room's change number `rev`. A message (or
// a change frame) is applied only if its rev is newer than what the page
// shows, so a change that arrives before its message, or twice, or through
// the change feed after a reconnect, ends in the same place. The change feed
// (GET /rooms/<id>/changes?after=<rev>) is read after every catch-up of
// messages: docs/delivery.md, "Edits and deletes".
"use strict";

window.webchat = window.webchat || {};

// options: roomId, myUid, myName, owner (this user created the room),
// rendered (Map id → <li>), names() → the names mentions are matched against
// (render.js), error(text) (shows a failure).
webchat.edits = function (options) {
  const el = webchat.el;
  const early = new Map(); // id → a change for a message not shown yet
  let cursor = null; // every change up to this rev has been applied; null until start()
  let running = null;
  let again = false;

  function revOf(item) { return Number(item.dataset.rev || 0); }

  function showDeleted(item) {
    item.classList.add("deleted");
    const body = item.querySelector(".message-body");
    const meta = body.querySelector(".meta");
    body.replaceChildren();
    if (meta) {
      for (const extra of meta.querySelectorAll(".message-actions, .edited, .seen")) extra.remove();
      body.append(meta);
    }
    body.append(el("p", "text deleted-text", "This message was deleted."));
    item.classList.remove("mentions-me");
    // The next message no longer groups under it (render.js).
    webchat.render.layout(item);
  }

  function showEdited(item, content, editedAt) {
    const text = item.querySelector("p.text");
    if (text) {
      // As render.js draws a message: links and mentions stay.
      text.replaceChildren();
      webchat.render.richText(text, content, { myName: options.myName, names: options.names() });
      const mine = item.classList.contains("mine");
      item.classList.toggle("mentions-me", !mine && webchat.render.mentions(content, options.myName));
    }
    let mark = item.querySelector(".edited");
    if (!mark) {
      mark = el("span", "edited", "edited");
      item.querySelector(".meta").insertBefore(mark, item.querySelector(".meta .time").nextSibling);
    }
    if (editedAt) mark.title = "edited " + new Date(editedAt).toLocaleString();
  }

  // Apply a change (a frame, a history entry or a change-feed entry) to the item, if newer.
  function applyTo(item, change) {
    if (typeof change.rev === "number" && change.rev <= revOf(item)) return;
    if (typeof change.rev === "number") item.dataset.rev = String(change.rev);
    if (change.deleted || change.type === "delete") showDeleted(item);
    else if (typeof change.content === "string" && change.edited_at) showEdited(item, change.content, change.edited_at);
  }

  function apply(change) {
    if (!change || change.room_id !== options.roomId || typeof change.id !== "number") return;
    const item = options.rendered.get(change.id);
    if (item) { applyTo(item, change); return; }
    // Its message is still on its way: apply the change when it comes.
    const held = early.get(change.id);
    if (!held || (change.rev || 0) > (held.rev || 0)) early.set(change.id, change);
  }

  async function edit(item, id) {
    const text = item.querySelector("p.text");
    if (!text || item.querySelector("textarea.edit-box")) return;
    const box = el("textarea", "edit-box");
    box.value = text.textContent;
    box.rows = 2;
    box.setAttribute("aria-label", "Edit message");
    const save = el("button", "button primary small", "Save");
    const cancel = el("button", "button small", "Cancel");
    save.type = cancel.type = "button";
    const form = el("div", "edit-form");
    form.append(box, el("div", "edit-buttons"));
    form.lastChild.append(save, cancel);
    text.hidden = true;
    text.after(form);
    box.focus();
    function close() { form.remove(); text.hidden = false; }
    async function submit() {
      if (!box.value.trim()) return;
      save.disabled = true;
      const result = await webchat.request("PATCH", "/messages/" + id, { content: box.value });
      save.disabled = false;
      if (result.ok || (result.data && result.data.stored)) {
        close();
        apply(result.data.change);
      } else {
        options.error(webchat.failure(result, "could not edit the message"));
      }
    }
    save.addEventListener("click", submit);
    cancel.addEventListener("click", close);
    box.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); submit(); }
      if (event.key === "Escape") close();
    });
  }

  async function remove(button, id) {
    // No confirm() dialog: the first click asks, the second deletes.
    if (!button.classList.contains("confirm")) {
      button.classList.add("confirm");
      button.textContent = "Delete?";
      setTimeout(function () { button.classList.remove("confirm"); button.textContent = "Delete"; }, 4000);
      return;
    }
    const result = await webchat.request("DELETE", "/messages/" + id);
    if (result.ok || (result.data && result.data.stored)) apply(result.data.change);
    else options.error(webchat.failure(result, "could not delete the message"));
  }

  // Called for each message as it is put in the list (before it is placed).
  function decorate(item, msg) {
    item.dataset.uid = String(msg.uid || "");
    if (msg.deleted) {
      item.dataset.rev = String(msg.rev || 0);
      showDeleted(item);
      return;
    }
    const mine = String(msg.uid) === options.myUid;
    if (mine || options.owner) {
      const actions = el("span", "message-actions");
      if (mine && msg.kind !== "image") {
        const editButton = el("button", "link-button edit-button", "Edit");
        editButton.type = "button";
        editButton.addEventListener("click", function () { edit(item, msg.id); });
        actions.append(editButton);
      }
      const deleteButton = el("button", "link-button delete-button", "Delete");
      deleteButton.type = "button";
      deleteButton.addEventListener("click", function () { remove(deleteButton, msg.id); });
      actions.append(deleteButton);
      item.querySelector(".meta").append(actions);
    }
    if (msg.edited_at) showEdited(item, msg.content, msg.edited_at);
    item.dataset.rev = String(msg.rev || 0);
    const held = early.get(msg.id);
    if (held) { early.delete(msg.id); applyTo(item, held); }
  }

  // The room's change number before the first page of history is read.
  async function start() {
    const result = await webchat.request("GET", "/rooms/" + options.roomId + "/changes");
    if (result.ok) cursor = result.data.rev;
  }

  // Every change after the cursor, page after page; one run at a time.
  function catchUp() {
    if (cursor === null) return Promise.resolve();
    if (running !== null) { again = true; return running; }
    running = (async function () {
      try {
        do {
          again = false;
          for (;;) {
            const result = await webchat.request("GET", "/rooms/" + options.roomId + "/changes?after=" + cursor + "&limit=200");
            if (!result.ok) return; // the next catch-up (reconnect, resync) tries again
            const changes = result.data.messages;
            changes.forEach(apply);
            let last = cursor;
            for (const change of changes) last = Math.max(last, change.rev || 0);
            // A short page means we hold everything up to the room's rev as read before it.
            cursor = changes.length < 200 ? Math.max(last, result.data.rev) : last;
            if (changes.length < 200) break;
          }
        } while (again);
      } finally {
        running = null;
      }
    })();
    return running;
  }

  return { apply, decorate, start, catchUp };
};
