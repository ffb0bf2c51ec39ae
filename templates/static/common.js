// Shared by every page: the CSRF token, a small JSON request helper, error
// wording, and the push server's WebSocket shared by a page's live features.
"use strict";

window.webchat = (function () {
  function meta(name) {
    const node = document.querySelector('meta[name="' + name + '"]');
    return node ? node.getAttribute("content") : "";
  }

  function csrfToken() {
    return meta("csrf-token");
  }

  async function send(method, url, body) {
    const headers = { "Accept": "application/json", "X-CSRFToken": csrfToken() };
    let payload;
    if (body instanceof FormData) {
      payload = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
    } catch (err) {
      return { ok: false, status: 0, data: { error: "network error: " + err.message } };
    }
    let data = {};
    try {
      data = await response.json();
    } catch (err) {
      data = { error: response.statusText || "unexpected answer" };
    }
    if (response.status === 429 && !data.retry_after) {
      data.retry_after = Number(response.headers.get("Retry-After")) || null;
    }
    return { ok: response.ok, status: response.status, data };
  }

  // A login in another window of this browser starts a new session, and the
  // token in this page goes stale (web_app/auth.py, session_info). Ask for the
  // current one; it may be used only while the session is still the user this
  // page was made for (meta "uid", empty on the public pages): sending as
  // someone else from a page that shows you would be wrong.
  async function refreshToken() {
    const answer = await send("GET", "/session");
    if (!answer.ok) return { ok: false, error: answer.data.error || "could not renew the session" };
    const pageUid = meta("uid");
    const nowUid = answer.data.uid === null || answer.data.uid === undefined ? "" : String(answer.data.uid);
    if (pageUid !== nowUid) {
      const who = answer.data.name ? "in as " + answer.data.name : "out";
      return { ok: false, error: "This browser is now logged " + who + " in another window: reload the page to go on." };
    }
    document.querySelector('meta[name="csrf-token"]').setAttribute("content", answer.data.csrf_token);
    return { ok: true };
  }

  // Sends JSON (or FormData) with the CSRF header; resolves to {ok, status, data}
  // and never rejects, so callers handle network failures like HTTP errors.
  // A refused (stale) CSRF token is renewed once and the request sent again.
  async function request(method, url, body) {
    const result = await send(method, url, body);
    if (result.status === 400 && result.data.code === "csrf") {
      const renewed = await refreshToken();
      if (!renewed.ok) return { ok: false, status: 409, data: { error: renewed.error, code: "session_changed" } };
      return send(method, url, body);
    }
    return result;
  }

  // What to tell a person about a failed request: a friendly "slow down" for a
  // rate limit (with how long to wait), the server's words otherwise.
  function errorMessage(result, fallback) {
    if (result.status === 429) {
      const wait = Number(result.data.retry_after);
      const when = wait > 0 ? " Try again in " + (wait < 90 ? wait + " s" : Math.ceil(wait / 60) + " min") + "." : "";
      return "Slow down a little: that was a lot in a short time." + when;
    }
    return result.data.error || fallback || "something went wrong";
  }

  function showError(element, message) {
    element.textContent = message || "";
    element.hidden = !message;
  }

  // Text only: every piece of user content goes through textContent.
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // Where to go after logging in: a path on this site only. The same rule as
  // web_app/auth.py's _SAFE_NEXT: browsers read "/\evil" and "/<tab>/evil" as
  // "//evil", another host, so backslashes, whitespace and controls are refused.
  function safeNext(target) {
    return typeof target === "string" && /^\/(?![\/\\])[^\\\s\x00-\x1f\x7f]*$/.test(target) ? target : "/";
  }

  // How long a page waits before reconnecting its WebSocket: exponential
  // backoff with full jitter (up to 0.5, 1, 2 ... 15 s). A 1001 close means the
  // push server is restarting (SIGTERM, a rolling restart) and every page it
  // held is told at once: the first try is spread over RESTART_SPREAD_MS so ten
  // thousand pages do not come back in the same instant.
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 15000;
  const RESTART_SPREAD_MS = 5000;
  function reconnectDelay(attempt, closeCode) {
    if (attempt === 0 && closeCode === 1001) return Math.random() * RESTART_SPREAD_MS;
    return Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
  }

  // One WebSocket to the push server per page and URL, however many live
  // features the page has (the lobby: unread counts, lobby.js, and the people
  // list, people.js): each connection costs the push server a socket and the
  // web app a bind, so a second one for the same page is waste. A feature
  // subscribes with bind(clientId) (its POST; resolves true once bound),
  // bound() (called after its bind: reload what changed while unbound) and
  // frame(frame) (every other frame). Every "init" (each reconnect) binds each
  // feature again; pings are answered here. The room page keeps its own
  // connection (room.js): its reconnects drive history catch-up and status.
  const sharedSockets = new Map();
  function sharedSocket(url) {
    if (sharedSockets.has(url)) return sharedSockets.get(url);
    const features = [];
    let clientId = null; // of the current connection, once "init" came
    let attempt = 0;
    let started = false;

    async function bindOne(feature, id) {
      const ok = feature.bind ? await feature.bind(id) : true;
      if (ok && id === clientId && feature.bound) feature.bound();
      return ok;
    }

    function connect() {
      let ws;
      try { ws = new WebSocket(url); } catch (err) { return; }
      ws.addEventListener("message", function (event) {
        if (typeof event.data !== "string") return;
        let frame;
        try { frame = JSON.parse(event.data); } catch (err) { return; }
        if (!frame || typeof frame !== "object") return;
        if (frame.type === "init") {
          clientId = frame.client_id;
          Promise.all(features.map(function (feature) { return bindOne(feature, frame.client_id); }))
            .then(function (results) { if (results.every(Boolean)) attempt = 0; });
        } else if (frame.type === "ping") {
          if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "pong" }));
        } else {
          for (const feature of features) if (feature.frame) feature.frame(frame);
        }
      });
      ws.addEventListener("close", function (event) {
        clientId = null;
        setTimeout(connect, reconnectDelay(attempt, event.code));
        attempt += 1;
      });
    }

    const shared = {
      subscribe: function (feature) {
        features.push(feature);
        // Subscribed after "init": bind it to the connection there is.
        if (clientId !== null) bindOne(feature, clientId);
        // Connect once the page's scripts have all subscribed (the same
        // DOMContentLoaded), so that the first "init" binds every feature.
        if (!started && url && typeof WebSocket !== "undefined") {
          started = true;
          setTimeout(connect, 0);
        }
      },
    };
    sharedSockets.set(url, shared);
    return shared;
  }

  return { csrfToken, request, errorMessage, showError, el, safeNext, reconnectDelay, sharedSocket };
})();
