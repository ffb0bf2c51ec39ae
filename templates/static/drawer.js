// Phones: below 700 px the member list does not fit beside the conversation,
// so it slides in as a drawer, opened from the top bar's members button and
// closed by its own button, the backdrop, Escape, or choosing someone to
// write to. Above 700 px the button is hidden and the list is always there.
"use strict";

window.webchat = window.webchat || {};

// options: button (top bar), panel (the members <aside>), close (its close
// button), backdrop.
webchat.drawer = function (options) {
  const body = document.body;
  const button = options.button;
  const panel = options.panel;

  function isOpen() {
    return body.classList.contains("drawer-open");
  }

  function open() {
    body.classList.add("drawer-open");
    options.backdrop.hidden = false;
    button.setAttribute("aria-expanded", "true");
    const first = panel.querySelector("button:not(:disabled)");
    (first || options.close).focus();
  }

  function close() {
    if (!isOpen()) return;
    body.classList.remove("drawer-open");
    options.backdrop.hidden = true;
    button.setAttribute("aria-expanded", "false");
  }

  button.addEventListener("click", function () { if (isOpen()) close(); else open(); });
  options.close.addEventListener("click", function () { close(); button.focus(); });
  options.backdrop.addEventListener("click", close);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && isOpen()) { close(); button.focus(); }
  });
  // Turning the phone (or widening the window) past the breakpoint: no drawer there.
  window.matchMedia("(min-width: 701px)").addEventListener("change", function (event) {
    if (event.matches) close();
  });

  return { open, close, isOpen };
};
