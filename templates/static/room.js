// The room page: one WebSocket to the push server for what arrives, AJAX to the
// web app for everything we do (bind, say, flush, history, images).
//
// Flow: load recent history → connect → on "init" POST /bind → catch up from
// the last contiguous position. How a message looks is render.js; older
// pages, the "new messages" pill and the "while you were away" divider are
// history.js; the composer (sending, its limits) composer.js; images
// upload.js; desktop notifications notify.js; the phone's member drawer
// drawer.js; the typing indicator typing.js; read positions, the title's
// unread count and "seen" reads.js; edits and deletes edits.js; the member
// list and its menu (private message, mute, ban) members.js. Frames other
// than messages go to those modules. When the socket drops, reconnect with
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
  let stopped = false; // banned: no more reconnecting

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
    edits.decorate(item, msg);
    reads.decorate(item, msg);
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
    typing.messageFrom(msg.uid);
    reads.shown();
  }

  function renderMembers() {
    memberMenu.render(members, avatars, target);
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

  function showComposerError(text) {
    webchat.showError(composerError, text);
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
    // A message we hold, given again (history, catch-up): it may carry an edit or delete.
    update: function (msg) { edits.apply(msg); },
    fetchAfter: function (after, limit) {
      return webchat.request("GET", "/rooms/" + roomId + "/messages?after=" + after + "&limit=" + limit);
    },
  });
  const catchUp = function () {
    // Messages (delivery.js), then the edits and deletes made meanwhile (edits.js).
    return Promise.resolve(delivery.catchUp()).then(edits.catchUp);
  };
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
  // Room interactions (issue 12), each in its own module: typing.js,
  // reads.js, edits.js, members.js.
  const owner = body.dataset.owner === "1";
  const edits = webchat.edits({
    roomId, myUid, myName, owner, rendered, names: function () { return knownNames; }, error: showComposerError,
  });
  const reads = webchat.reads({ roomId, myUid, position: Number(body.dataset.readPosition || 0), list, rendered });
  const typing = webchat.typing({
    roomId, myUid, input: content, indicator: document.getElementById("typing"), target: function () { return target; },
  });
  const memberMenu = webchat.members({
    roomId, myUid, owner, setTarget, notice, composer, list, memberList,
    counts: [document.getElementById("member-count"), document.getElementById("members-toggle-count")],
    stop: function () { stopped = true; setStatus("offline", "Banned"); if (socket) socket.close(); },
  });
  const moduleFrames = {
    typing: typing.receive, read: reads.receive, edit: edits.apply, delete: edits.apply,
    banned: memberMenu.receive, muted: memberMenu.receive, unbanned: memberMenu.receive, unmuted: memberMenu.receive,
  };

  async function loadRecent() {
    const PAGE = 50;
    await edits.start(); // the change number first: later changes are fetched after it
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
    ws.addEventListener("close", function (event) {
      if (socket !== ws) return;
      socket = null;
      if (stopped) return;
      scheduleReconnect(event.code);
    });
  }

  function scheduleReconnect(code) {
    const delay = webchat.reconnectDelay(attempt, code);
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
    applyMembers(result.data.users_list, result.data.avatars);
    memberMenu.setRestrictions(result.data.restrictions); // the owner's only: who is muted or banned
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
    showComposerError(webchat.failure(result, "could not send"));
    return false;
  }

  // Enter and the Send button: composer.js (nothing typed meanwhile is lost).
  webchat.composerSend({
    form: composer, content, button: send, limits, error: showComposerError, handle: handleSent,
    body: function (text) {
      const message = { room_id: roomId, type: target ? "to" : "all", content: text };
      if (target) message.to_uid = target.uid;
      return message;
    },
  });
  privateCancel.addEventListener("click", function () { setTarget(null); });
  webchat.imageUploads({
    roomId: roomId, maxBytes: Number(body.dataset.maxImageBytes), input: imageInput,
    dropZone: document.getElementById("conversation"), content: content,
    progress: document.getElementById("upload-progress"),
    error: showComposerError,
    target: function () { return target; },
    done: handleSent,
  });
  webchat.avatarUpload({
    input: document.getElementById("avatar-input"), maxBytes: Number(body.dataset.maxAvatarBytes),
    error: showComposerError,
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
