// The room page: one WebSocket to the push server for what arrives, AJAX to the
// web app for everything we do (bind, say, flush, history, images).
//
// Flow: load recent history → connect → on "init" POST /bind → catch up from
// the last contiguous position. When the socket drops, reconnect with
// exponential backoff and jitter and do the same again. What we hold and how
// we find what we missed follows docs/delivery.md: every message carries its
// conversation's seq, a hole in a seq is a gap, and a catch-up fetches
// everything after a cursor that only a complete catch-up moves.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const el = webchat.el;
  const body = document.body;
  const roomId = Number(body.dataset.roomId);
  const myUid = body.dataset.uid;
  const wsUrl = body.dataset.wsUrl;

  const list = document.getElementById("messages");
  const status = document.getElementById("status");
  const memberList = document.getElementById("member-list");
  const memberCount = document.getElementById("member-count");
  const composer = document.getElementById("composer");
  const content = document.getElementById("content");
  const send = document.getElementById("send");
  const composerError = document.getElementById("composer-error");
  const privatePill = document.getElementById("private-pill");
  const privateName = document.getElementById("private-name");
  const privateCancel = document.getElementById("private-cancel");
  const imageInput = document.getElementById("image-input");

  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 15000;

  const rendered = new Map(); // message id → its <li>
  let maxShown = 0; // the highest message id in the list (for placing the others)
  let members = null; // {uid: name} from the last flush; null until the first
  let target = null; // {uid, name} while writing privately
  let socket = null;
  let attempt = 0;
  let everBound = false;
  let stopped = false; // banned: no more reconnecting

  // -- rendering --------------------------------------------------------------

  function formatTime(iso) {
    const date = new Date(iso);
    if (isNaN(date.getTime())) return "";
    const sameDay = date.toDateString() === new Date().toDateString();
    return sameDay
      ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : date.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  function stickToBottom(action) {
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    action();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function notice(text) {
    stickToBottom(function () {
      list.append(el("li", "notice", text));
    });
  }

  // Puts one message in the list, in id order; delivery.js calls it once per
  // message of this room (it drops duplicates and other rooms' messages).
  function renderMessage(msg) {
    const mine = String(msg.uid) === myUid;
    const item = el("li", "message");
    item.dataset.id = String(msg.id);
    if (mine) item.classList.add("mine");
    if (msg.type === "to") item.classList.add("private");

    const avatar = el("span", "avatar", String(msg.uname || "?").slice(0, 1).toUpperCase());
    avatar.setAttribute("aria-hidden", "true");
    const bubble = el("div", "message-body");
    const meta = el("div", "meta");
    meta.append(el("span", "author", msg.uname));
    if (msg.type === "to") {
      const to = mine ? "to " + (msg.to_uname || "someone") : "to you";
      meta.append(el("span", "private-tag", "private · " + to));
    }
    const time = el("time", "time", formatTime(msg.created_at));
    time.dateTime = msg.created_at;
    time.title = new Date(msg.created_at).toLocaleString();
    meta.append(time);
    bubble.append(meta);

    // The URL is the app's own /images/<id>; anything else (another host, a
    // javascript: URL) is not shown as a link or picture.
    if (msg.kind === "image" && typeof msg.url === "string" && /^\/images\/\d+$/.test(msg.url)) {
      const link = el("a", "image-link");
      link.href = msg.url;
      link.target = "_blank";
      link.rel = "noopener";
      const img = el("img", "chat-image");
      img.alt = msg.content || "image";
      img.src = msg.url;
      img.addEventListener("load", function () {
        if (list.scrollHeight - list.scrollTop - list.clientHeight < img.height + 80) list.scrollTop = list.scrollHeight;
      });
      link.append(img);
      bubble.append(link);
    } else {
      bubble.append(el("p", "text", msg.content));
    }
    item.append(avatar, bubble);
    edits.decorate(item, msg);
    reads.decorate(item, msg);

    stickToBottom(function () {
      // Keep messages in id order even when a pushed one and a fetched page cross.
      let before = null;
      if (msg.id < maxShown) {
        for (const node of list.querySelectorAll("li.message")) {
          if (Number(node.dataset.id) > msg.id) { before = node; break; }
        }
      }
      list.insertBefore(item, before);
    });
    rendered.set(msg.id, item);
    maxShown = Math.max(maxShown, msg.id);
    typing.messageFrom(msg.uid);
    reads.shown();
  }

  function renderMembers() {
    const entries = Object.entries(members || {}).sort(function (a, b) { return a[1].localeCompare(b[1]); });
    memberList.replaceChildren();
    for (const [uid, name] of entries) {
      const item = el("li");
      const button = el("button", "member", null);
      button.type = "button";
      button.dataset.uid = uid;
      button.append(el("span", "avatar small", String(name).slice(0, 1).toUpperCase()), el("span", "member-name", name));
      if (uid === myUid) {
        button.append(el("span", "you", "you"));
        button.disabled = true;
      } else {
        button.title = name + ": message privately" + (body.dataset.owner === "1" ? ", mute or ban" : "");
        button.setAttribute("aria-haspopup", "menu");
        button.addEventListener("click", function () { memberMenu.open(button, { uid, name }); });
      }
      if (target && target.uid === uid) button.classList.add("selected");
      item.append(button);
      memberList.append(item);
    }
    memberCount.textContent = String(entries.length);
  }

  function applyMembers(usersList) {
    if (!usersList || typeof usersList !== "object") return;
    if (members !== null) {
      for (const uid of Object.keys(usersList)) {
        if (!(uid in members) && uid !== myUid) notice(usersList[uid] + " joined");
      }
      for (const uid of Object.keys(members)) {
        if (!(uid in usersList) && uid !== myUid) notice(members[uid] + " left");
      }
    }
    members = Object.assign({}, usersList);
    renderMembers();
  }

  function setTarget(next) {
    target = next;
    privatePill.hidden = !target;
    privateName.textContent = target ? target.name : "";
    composer.classList.toggle("private-mode", !!target);
    content.placeholder = target ? "Private message to " + target.name : "Message #" + body.dataset.roomName;
    renderMembers();
    content.focus();
  }

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  // -- history and delivery (templates/static/delivery.js, docs/delivery.md) --

  const delivery = webchat.delivery({
    roomId: roomId,
    myUid: myUid,
    show: renderMessage,
    // A message we hold, given again (history, catch-up): it may carry an edit or delete.
    update: function (msg) { edits.apply(msg); },
    fetchAfter: function (after, limit) {
      return webchat.request("GET", "/rooms/" + roomId + "/messages?after=" + after + "&limit=" + limit);
    },
  });
  // Room interactions (issue 12), each in its own module: typing.js,
  // reads.js, edits.js, members.js.
  const composerErrorText = function (text) { webchat.showError(composerError, text); };
  const edits = webchat.edits({ roomId, myUid, owner: body.dataset.owner === "1", rendered, error: composerErrorText });
  const reads = webchat.reads({ roomId, myUid, position: Number(body.dataset.readPosition || 0), list, rendered });
  const typing = webchat.typing({
    roomId, myUid, input: content, indicator: document.getElementById("typing"), target: function () { return target; },
  });
  const memberMenu = webchat.members({
    roomId, myUid, owner: body.dataset.owner === "1", setTarget, notice, composer, list,
    stop: function () { stopped = true; setStatus("offline", "Banned"); if (socket) socket.close(); },
  });

  const moduleFrames = {
    typing: typing.receive, read: reads.receive, edit: edits.apply, delete: edits.apply,
    banned: memberMenu.receive, muted: memberMenu.receive, unbanned: memberMenu.receive, unmuted: memberMenu.receive,
  };

  // Messages (delivery.js), then the edits and deletes made meanwhile (edits.js).
  function catchUp() {
    return Promise.resolve(delivery.catchUp()).then(edits.catchUp);
  }

  async function loadRecent() {
    await edits.start(); // the change number first: later changes are fetched after it
    const result = await webchat.request("GET", "/rooms/" + roomId + "/messages?limit=50");
    if (result.ok) delivery.start(result.data.messages);
  }

  // -- the connection -----------------------------------------------------------

  function connect() {
    setStatus("connecting", everBound ? "Reconnecting…" : "Connecting…");
    let ws;
    try {
      ws = new WebSocket(wsUrl);
    } catch (err) {
      scheduleReconnect();
      return;
    }
    socket = ws;
    ws.addEventListener("message", function (event) {
      if (typeof event.data !== "string") return;
      let frame;
      try { frame = JSON.parse(event.data); } catch (err) { return; }
      if (frame && typeof frame === "object") handleFrame(ws, frame);
    });
    ws.addEventListener("close", function () {
      if (socket !== ws) return;
      socket = null;
      if (stopped) return;
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    // Exponential backoff with jitter, so a restarted push server is not hit by
    // every page at the same instant.
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    attempt += 1;
    setStatus("offline", "Offline · retrying in " + Math.ceil(delay / 1000) + " s");
    setTimeout(connect, delay);
  }

  function handleFrame(ws, frame) {
    switch (frame.type) {
      case "init":
        bind(ws, frame.client_id);
        break;
      case "all":
      case "to":
        delivery.receiveLive(frame);
        break;
      case "resync":
        // The push server may have dropped pushes (docs/delivery.md): fetch
        // what we missed, on the socket we have.
        catchUp();
        break;
      case "flush":
        applyMembers(frame.users_list);
        break;
      case "leave":
        scheduleFlush();
        break;
      case "ping":
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "pong" }));
        break;
      default:
        // typing, read, edit, delete, banned, muted, unbanned, unmuted: the modules' frames.
        if (Object.prototype.hasOwnProperty.call(moduleFrames, frame.type)) moduleFrames[frame.type](frame);
    }
  }

  let flushTimer = null;

  // Someone's connection went away: ask for the new member list. Every page in
  // the room hears the same leave, so wait a random moment and fold a burst of
  // leaves (a node going down, many tabs closing) into one request per page.
  function scheduleFlush() {
    if (flushTimer !== null) return;
    flushTimer = setTimeout(function () {
      flushTimer = null;
      webchat.request("POST", "/flush", { room_id: roomId });
    }, 100 + Math.random() * 400);
  }

  async function bind(ws, clientId) {
    const result = await webchat.request("POST", "/bind", { client_id: clientId, room_id: roomId });
    if (socket !== ws) return;
    if (!result.ok) {
      if (result.status === 401) {
        window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
        return;
      }
      if (result.status === 403 && memberMenu.refused(result.data)) return;
      notice("Could not join the room: " + (result.data.error || "error " + result.status));
      ws.close(); // the close handler retries with backoff
      return;
    }
    const reconnected = everBound;
    everBound = true;
    attempt = 0;
    setStatus("online", "Online");
    applyMembers(result.data.users_list);
    if (reconnected) notice("Reconnected");
    await catchUp();
  }

  // -- sending ----------------------------------------------------------------

  function handleSent(result) {
    if (result.ok) {
      delivery.receiveLive(result.data.message);
      typing.sent();
      return true;
    }
    if (result.status === 403) memberMenu.refused(result.data);
    if (result.data && result.data.stored) {
      // Stored but not pushed: ours to show; the others fetch it when they
      // reconnect. Pushes to us may be failing too: catch up now.
      delivery.receive(result.data.message);
      notice("Saved, but live delivery failed: others will see it when they reconnect.");
      catchUp();
      return true;
    }
    webchat.showError(composerError, result.data.error || "could not send");
    return false;
  }

  let sending = false; // a /say is on its way
  let sendAgain = false; // Enter was pressed meanwhile

  // Sends what the composer holds. Only the text that was sent is taken out
  // of the composer, when the answer says it is stored: what was typed while
  // it was on its way stays. One send at a time: Enter pressed meanwhile
  // (the button is disabled, Enter is not) sends what is left afterwards, so
  // pressing it twice stores the message once.
  async function say() {
    if (sending) {
      sendAgain = true;
      return;
    }
    const text = content.value;
    if (!text.trim()) return;
    webchat.showError(composerError, "");
    const message = { room_id: roomId, type: target ? "to" : "all", content: text };
    if (target) message.to_uid = target.uid;
    sending = true;
    sendAgain = false;
    send.disabled = true;
    let result;
    try {
      result = await webchat.request("POST", "/say", message);
    } finally {
      sending = false;
      send.disabled = false;
    }
    if (handleSent(result)) {
      if (content.value.startsWith(text)) content.value = content.value.slice(text.length);
      autoGrow();
      if (sendAgain) {
        sendAgain = false;
        say();
        return;
      }
    }
    sendAgain = false;
    content.focus();
  }

  async function sendImage(file) {
    webchat.showError(composerError, "");
    const form = new FormData();
    form.append("file", file);
    form.append("type", target ? "to" : "all");
    if (target) form.append("to_uid", target.uid);
    const result = await webchat.request("POST", "/rooms/" + roomId + "/images", form);
    handleSent(result);
  }

  function autoGrow() {
    content.style.height = "auto";
    content.style.height = Math.min(content.scrollHeight, 160) + "px";
  }

  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    say();
  });
  content.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      say();
    }
  });
  content.addEventListener("input", autoGrow);
  privateCancel.addEventListener("click", function () { setTarget(null); });
  imageInput.addEventListener("change", function () {
    if (imageInput.files.length) sendImage(imageInput.files[0]);
    imageInput.value = "";
  });

  loadRecent().then(connect);
});
