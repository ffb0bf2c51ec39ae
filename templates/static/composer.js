// The composer's limits, said out loud: a counter that appears near the
// 4,000-character limit (the textarea has no maxlength, which cut a long
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
