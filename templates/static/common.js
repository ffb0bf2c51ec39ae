// Shared by every page: the CSRF token and a small JSON request helper.
"use strict";

window.webchat = (function () {
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // Sends JSON (or FormData) with the CSRF header; resolves to {ok, status, data}
  // and never rejects, so callers handle network failures like HTTP errors.
  async function request(method, url, body) {
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
    return { ok: response.ok, status: response.status, data };
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

  return { csrfToken, request, showError, el };
})();
