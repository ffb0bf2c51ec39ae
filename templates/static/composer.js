// The composer: sending what it holds (POST /say) without losing what is
// typed meanwhile, and its limits said out loud: a counter that appears near
// the 4,000-character limit (the textarea has no maxlength, which cut a long
// paste silently), a send refused with a clear message and the text kept, and
// a friendly "slow down" when the web app answers 429.
"use strict";

window.webchat = window.webchat || {};

// Characters as the web app counts them (code points, not UTF-16 units).
webchat.length = function (text) {
  let n = 0;
  for (const _ of text) n += 1; // eslint-disable-line no-unused-vars
  return n;
};

// What to tell the person about a failed request.
webchat.failure = function (result, fallback) {
  if (result.status === 429) {
    const wait = Math.ceil(Number(result.data && result.data.retry_after));
    return "Slow down — " + (wait > 0 ? "try again in " + wait + " s." : "try again in a moment.") +
      " Your message is still here.";
  }
  if (typeof webchat.errorMessage === "function") return webchat.errorMessage(result, fallback);
  return (result.data && result.data.error) || fallback || "something went wrong";
};

// options: content (textarea), counter (element), max (characters).
webchat.composerLimits = function (options) {
  const content = options.content;
  const counter = options.counter;
  const max = options.max;
  // The counter shows from here on: far enough ahead to matter, quiet before.
  const WARN_AT = Math.floor(max * 0.9);
  const format = new Intl.NumberFormat();

  function update() {
    const n = webchat.length(content.value);
    counter.hidden = n < WARN_AT;
    counter.classList.toggle("over", n > max);
    counter.textContent = n > max
      ? format.format(n) + " / " + format.format(max) + " · " + format.format(n - max) + " too many"
      : format.format(n) + " / " + format.format(max);
  }

  // Null if the text may be sent, else why not (the text stays in the composer).
  function refusal(text) {
    const n = webchat.length(text);
    if (n <= max) return null;
    return "This message is " + format.format(n) + " characters; the limit is " + format.format(max) +
      ". Shorten it or send it in parts.";
  }

  content.addEventListener("input", update);
  update();
  return { update, refusal };
};

// Sends what the composer holds. Only the text that was sent is taken out of
// the composer, when the answer says it is stored: what was typed while it
// was on its way stays. One send at a time: Enter pressed meanwhile (the
// button is disabled, Enter is not) sends what is left afterwards, so
// pressing it twice stores the message once.
// options: form, content (textarea), button (Send), limits (composerLimits),
// body(text) → the /say body, handle(result) → true if it was stored,
// error(text).
webchat.composerSend = function (options) {
  const content = options.content;
  let sending = false; // a /say is on its way
  let sendAgain = false; // Enter was pressed meanwhile

  async function say() {
    if (sending) {
      sendAgain = true;
      return;
    }
    const text = content.value;
    if (!text.trim()) return;
    const refused = options.limits.refusal(text);
    options.error(refused || "");
    if (refused) return;
    sending = true;
    sendAgain = false;
    options.button.disabled = true;
    let result;
    try {
      result = await webchat.request("POST", "/say", options.body(text));
    } finally {
      sending = false;
      options.button.disabled = false;
    }
    if (options.handle(result)) {
      if (content.value.startsWith(text)) content.value = content.value.slice(text.length);
      autoGrow();
      options.limits.update();
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

  options.form.addEventListener("submit", function (event) {
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
  return { say };
};
