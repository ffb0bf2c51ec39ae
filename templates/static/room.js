// The room page: one WebSocket to the push server for what arrives, AJAX to the
// web app for everything we do (bind, say, flush, history, images).
//
// Flow: load recent history → connect → on "init" POST /bind → catch up from
// the last contiguous position. How a message looks is render.js; older
// pages, the "new messages" pill and the "while you were away" divider are
// history.js; the composer's limits composer.js; images upload.js; desktop
// notifications notify.js; the phone's member drawer drawer.js. When the socket drops, reconnect with
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
  const retryButton = document.getElementById("retry-now");
  const membersStale = document.getElementById("members-stale");
  const myName = body.dataset.uname;

  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 15000;

  const rendered = new Map(); // message id → its <li>
  let maxShown = 0; // the highest message id in the list (for placing the others)
  let members = null; // {uid: name} from the last flush; null until the first
  let avatars = {}; // {uid: avatar url} of members with a picture
  const authors = new Set(); // names seen on messages: mentions of them are highlighted
  let knownNames = []; // members' and authors' names, longest first
  let ready = false; // the first page of history is shown
  let reconnectTimer = null;
  let target = null; // {uid, name} while writing privately
  let socket = null;
  let attempt = 0;
  let everBound = false;

  // -- rendering --------------------------------------------------------------

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

  function learnNames() {
    const all = new Set(Object.values(members || {}).concat(Array.from(authors)));
    knownNames = Array.from(all).sort(function (a, b) { return b.length - a.length; });
  }

  // Puts one message in the list, in id order; delivery.js calls it once per
  // message of this room (it drops duplicates and other rooms' messages).
  function renderMessage(msg) {
    if (typeof msg.uname === "string" && !authors.has(msg.uname)) {
      authors.add(msg.uname);
      learnNames();
    }
    const item = webchat.render.message(msg, { myUid, myName, names: knownNames });
    const wasAtBottom = history.atBottom() || String(msg.uid) === myUid; // your own message takes you down
    const isNew = msg.id > maxShown;
    const img = item.querySelector("img.chat-image");
    if (img) {
      img.addEventListener("load", function () {
        if (list.scrollHeight - list.scrollTop - list.clientHeight < img.height + 80) list.scrollTop = list.scrollHeight;
      });
    }
    // Keep messages in id order even when a pushed one and a fetched page cross.
    let before = null;
    if (msg.id < maxShown) {
      for (const node of list.querySelectorAll("li.message")) {
        if (Number(node.dataset.id) > msg.id) { before = node; break; }
      }
    }
    list.insertBefore(item, before);
    webchat.render.layout(item);
    if (isNew && wasAtBottom) list.scrollTop = list.scrollHeight;
    rendered.set(msg.id, item);
    maxShown = Math.max(maxShown, msg.id);
    history.noteShown(msg, item, wasAtBottom, isNew);
    if (isNew && ready) notify.consider(msg);
  }

  function renderMembers() {
    const entries = Object.entries(members || {}).sort(function (a, b) { return a[1].localeCompare(b[1]); });
    memberList.replaceChildren();
    for (const [uid, name] of entries) {
      const item = el("li");
      const button = el("button", "member", null);
      button.type = "button";
      button.dataset.uid = uid;
      button.append(webchat.render.avatar(uid, name, avatars[uid], true), el("span", "member-name", name));
      if (uid === myUid) {
        button.append(el("span", "you", "you"));
        button.disabled = true;
      } else {
        button.title = "Message " + name + " privately";
        button.addEventListener("click", function () { setTarget({ uid, name }); });
      }
      if (target && target.uid === uid) button.classList.add("selected");
      item.append(button);
      memberList.append(item);
    }
    memberCount.textContent = String(entries.length);
    document.getElementById("members-toggle-count").textContent = String(entries.length);
  }

  function applyMembers(usersList, avatarList) {
    if (!usersList || typeof usersList !== "object") return;
    if (avatarList && typeof avatarList === "object") avatars = Object.assign({}, avatarList);
    if (members !== null) {
      for (const uid of Object.keys(usersList)) {
        if (!(uid in members) && uid !== myUid) notice(usersList[uid] + " joined");
      }
      for (const uid of Object.keys(members)) {
        if (!(uid in usersList) && uid !== myUid) notice(members[uid] + " left");
      }
    }
    members = Object.assign({}, usersList);
    learnNames();
    renderMembers();
  }

  function setTarget(next) {
    target = next;
    privatePill.hidden = !target;
    privateName.textContent = target ? target.name : "";
    composer.classList.toggle("private-mode", !!target);
    content.placeholder = target ? "Private message to " + target.name : "Message #" + body.dataset.roomName;
    renderMembers();
    if (target) drawer.close();
    content.focus();
  }

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
    // Offline, the member list is what it was when we lost the connection.
    const offline = state === "offline";
    retryButton.hidden = !offline;
    membersStale.hidden = !offline;
    document.getElementById("members").classList.toggle("stale", offline);
  }

  // -- history and delivery (templates/static/delivery.js, docs/delivery.md) --

  const delivery = webchat.delivery({
    roomId: roomId,
    myUid: myUid,
    show: renderMessage,
    fetchAfter: function (after, limit) {
      return webchat.request("GET", "/rooms/" + roomId + "/messages?after=" + after + "&limit=" + limit);
    },
  });
  const catchUp = delivery.catchUp;
  const history = webchat.history({
    list: list, roomId: roomId, roomName: body.dataset.roomName, delivery: delivery,
    pill: document.getElementById("new-pill"),
  });
  const notify = webchat.notify({ button: document.getElementById("notify-toggle"), roomName: body.dataset.roomName, myUid, myName });
  const drawer = webchat.drawer({
    button: document.getElementById("members-toggle"), panel: document.getElementById("members"),
    close: document.getElementById("drawer-close"), backdrop: document.getElementById("drawer-backdrop"),
  });
  const limits = webchat.composerLimits({
    content: content, counter: document.getElementById("char-count"), max: Number(body.dataset.contentMax),
  });

  async function loadRecent() {
    const PAGE = 50;
    const result = await webchat.request("GET", "/rooms/" + roomId + "/messages?limit=" + PAGE);
    if (result.ok) delivery.start(result.data.messages);
    ready = true;
    if (result.ok) history.start(result.data.messages.length, PAGE);
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
    reconnectTimer = setTimeout(function () { reconnectTimer = null; connect(); }, delay);
  }

  // "Retry now": do not wait for the backoff.
  retryButton.addEventListener("click", function () {
    if (reconnectTimer === null) return;
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    connect();
  });

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
        applyMembers(frame.users_list, frame.avatars);
        break;
      case "leave":
        scheduleFlush();
        break;
      case "ping":
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "pong" }));
        break;
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
      notice("Could not join the room: " + (result.data.error || "error " + result.status));
      ws.close(); // the close handler retries with backoff
      return;
    }
    const reconnected = everBound;
    everBound = true;
    attempt = 0;
    setStatus("online", "Online");
    applyMembers(result.data.users_list, result.data.avatars);
    if (reconnected) {
      notice("Reconnected");
      history.awayStart();
    }
    await catchUp();
    if (reconnected) history.awayEnd();
  }

  // -- sending ----------------------------------------------------------------

  function handleSent(result) {
    if (result.ok) {
      delivery.receiveLive(result.data.message);
      return true;
    }
    if (result.data && result.data.stored) {
      // Stored but not pushed: ours to show; the others fetch it when they
      // reconnect. Pushes to us may be failing too: catch up now.
      delivery.receive(result.data.message);
      notice("Saved, but live delivery failed: others will see it when they reconnect.");
      catchUp();
      return true;
    }
    webchat.showError(composerError, webchat.failure(result, "could not send"));
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
    const refused = limits.refusal(text);
    webchat.showError(composerError, refused || "");
    if (refused) return;
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
      limits.update();
      if (sendAgain) {
        sendAgain = false;
        say();
        return;
      }
    }
    sendAgain = false;
    content.focus();
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
  webchat.imageUploads({
    roomId: roomId, maxBytes: Number(body.dataset.maxImageBytes), input: imageInput,
    dropZone: document.getElementById("conversation"), content: content,
    progress: document.getElementById("upload-progress"),
    error: function (text) { webchat.showError(composerError, text); },
    target: function () { return target; },
    done: handleSent,
  });
  webchat.avatarUpload({
    input: document.getElementById("avatar-input"), maxBytes: Number(body.dataset.maxAvatarBytes),
    error: function (text) { webchat.showError(composerError, text); },
    done: function (url) {
      const mine = webchat.render.avatar(myUid, myName, url);
      mine.id = "my-avatar";
      document.getElementById("my-avatar").replaceWith(mine);
      avatars[myUid] = url;
      renderMembers();
    },
  });

  loadRecent().then(connect);
});
