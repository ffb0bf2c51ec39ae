// How a chat message looks: avatar, author, time, text with safe links and
// @mentions, or an image; and the room's layout around messages: a date
// separator before each day's first message, and consecutive messages of one
// author folded under one header.
//
// Everything a user wrote reaches the page through textContent or as an
// attribute value checked here; nothing is ever parsed as HTML.
"use strict";

window.webchat = window.webchat || {};

webchat.render = (function () {
  const el = webchat.el;
  // Consecutive messages of one author within this long share one header.
  const GROUP_MS = 5 * 60 * 1000;
  const PALETTE = 12; // .avatar.c0 … .c11 in app.css; base.html uses the same uid % 12
  const AVATAR_URL = /^\/avatars\/\d+\?v=\d+$/;
  const IMAGE_URL = /^\/images\/\d+$/;
  // A link ends at whitespace or a quote or bracket; sticky: it must start where we look.
  const LINK = /https?:\/\/[^\s<>"'`]+/iy;
  const WORD_CHAR = /[\p{L}\p{N}_]/u;
  const MENTION_WORD = /^@[\p{L}\p{N}_.\-]+/u;

  function colourClass(uid) {
    const n = Number(uid);
    return "c" + (Number.isFinite(n) ? Math.abs(Math.floor(n)) % PALETTE : 0);
  }

  function initials(name) {
    const words = String(name || "?").trim().split(/\s+/).filter(Boolean);
    const letters = words.length > 1 ? [words[0], words[words.length - 1]] : [words[0] || "?"];
    return letters.map(function (word) { return Array.from(word)[0] || ""; }).join("").toUpperCase();
  }

  // A round avatar: the uploaded picture if there is one (our own /avatars
  // URL only), else the initials on the user's colour.
  function avatar(uid, name, url, small) {
    const node = el("span", "avatar " + colourClass(uid) + (small ? " small" : ""), initials(name));
    node.setAttribute("aria-hidden", "true");
    if (typeof url === "string" && AVATAR_URL.test(url)) {
      const img = el("img", "avatar-img");
      img.alt = "";
      img.src = url;
      // A picture that fails to load leaves the initials showing.
      img.addEventListener("error", function () { img.remove(); });
      node.append(img);
    }
    return node;
  }

  // A URL as typed may end with punctuation that belongs to the sentence.
  function trimLink(candidate) {
    let url = candidate.replace(/[.,;:!?]+$/, "");
    while (url.endsWith(")") && (url.match(/\(/g) || []).length < (url.match(/\)/g) || []).length) {
      url = url.slice(0, -1).replace(/[.,;:!?]+$/, "");
    }
    return url;
  }

  function safeHref(text) {
    try {
      const url = new URL(text);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (err) {
      return null;
    }
  }

  // The mention that starts at text[i] ("@"): the longest known name that
  // follows, case-insensitively and ending at a word boundary (names may hold
  // spaces), else an @word. Returns {length, name} or null.
  function mentionAt(text, i, names) {
    if (i > 0 && WORD_CHAR.test(text[i - 1])) return null; // an e-mail address, not a mention
    const rest = text.slice(i + 1);
    const lower = rest.toLowerCase();
    for (const name of names) {
      if (lower.startsWith(name.toLowerCase()) && !WORD_CHAR.test(rest.charAt(name.length))) {
        return { length: name.length + 1, name: name };
      }
    }
    const word = MENTION_WORD.exec(text.slice(i));
    return word ? { length: word[0].length, name: word[0].slice(1) } : null;
  }

  function sameName(a, b) {
    return a.localeCompare(b, undefined, { sensitivity: "accent" }) === 0;
  }

  // Fills `parent` with `text` as text nodes, links and mention spans.
  // ctx: {myName, names: [known names, longest first]}.
  function richText(parent, text, ctx) {
    const names = (ctx && ctx.names) || [];
    const myName = (ctx && ctx.myName) || "";
    let plain = "";
    function flush() {
      if (plain) parent.append(document.createTextNode(plain));
      plain = "";
    }
    let i = 0;
    while (i < text.length) {
      const ch = text[i];
      if ((ch === "h" || ch === "H") && (i === 0 || !WORD_CHAR.test(text[i - 1]))) {
        LINK.lastIndex = i;
        const match = LINK.exec(text);
        if (match && match.index === i) {
          const shown = trimLink(match[0]);
          const href = safeHref(shown);
          if (href) {
            flush();
            const link = el("a", "link", shown);
            link.href = href;
            link.target = "_blank";
            link.rel = "noopener noreferrer nofollow";
            parent.append(link);
            i += shown.length;
            continue;
          }
        }
      }
      if (ch === "@") {
        const mention = mentionAt(text, i, names);
        if (mention) {
          flush();
          const span = el("span", "mention", text.slice(i, i + mention.length));
          if (myName && sameName(mention.name, myName)) span.classList.add("me");
          parent.append(span);
          i += mention.length;
          continue;
        }
      }
      plain += ch;
      i += 1;
    }
    flush();
  }

  // Whether `text` mentions `myName` (what makes a notification and the
  // message's highlight).
  function mentions(text, myName) {
    if (!myName || typeof text !== "string") return false;
    const lower = text.toLowerCase();
    const needle = "@" + myName.toLowerCase();
    let at = lower.indexOf(needle);
    while (at !== -1) {
      const before = at > 0 ? text[at - 1] : "";
      const after = text.charAt(at + needle.length);
      if (!WORD_CHAR.test(before) && !WORD_CHAR.test(after)) return true;
      at = lower.indexOf(needle, at + 1);
    }
    return false;
  }

  function formatTime(iso) {
    const date = new Date(iso);
    if (isNaN(date.getTime())) return "";
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function dayKey(iso) {
    const date = new Date(iso);
    return isNaN(date.getTime()) ? "" : date.getFullYear() + "-" + (date.getMonth() + 1) + "-" + date.getDate();
  }

  function dayLabel(iso) {
    const date = new Date(iso);
    if (isNaN(date.getTime())) return "";
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (date.toDateString() === today.toDateString()) return "Today";
    if (date.toDateString() === yesterday.toDateString()) return "Yesterday";
    const options = { weekday: "long", month: "long", day: "numeric" };
    if (date.getFullYear() !== today.getFullYear()) options.year = "numeric";
    return date.toLocaleDateString([], options);
  }

  // One message's <li> (li.message > .avatar + .message-body > .meta + p.text
  // or an image). ctx: {myUid, myName, names}.
  function message(msg, ctx) {
    const mine = String(msg.uid) === ctx.myUid;
    const item = el("li", "message");
    item.dataset.id = String(msg.id);
    item.dataset.uid = String(msg.uid);
    item.dataset.type = msg.type === "to" ? "to:" + [msg.uid, msg.to_uid].sort().join(":") : "all";
    // A deleted message in history has no time (SPEC §10): it takes no date separator.
    if (msg.created_at) {
      item.dataset.time = msg.created_at;
      item.dataset.day = dayKey(msg.created_at);
    }
    if (mine) item.classList.add("mine");
    if (msg.type === "to") item.classList.add("private");
    if (!mine && msg.kind !== "image" && mentions(msg.content, ctx.myName)) item.classList.add("mentions-me");

    const bubble = el("div", "message-body");
    const meta = el("div", "meta");
    meta.append(el("span", "author", msg.uname));
    if (msg.type === "to") {
      const to = mine ? "to " + (msg.to_uname || "someone") : "to you";
      meta.append(el("span", "private-tag", "private · " + to));
    }
    const time = el("time", "time", formatTime(msg.created_at));
    if (msg.created_at) {
      time.dateTime = msg.created_at;
      time.title = new Date(msg.created_at).toLocaleString();
    }
    meta.append(time);
    bubble.append(meta);

    // The URL is the app's own /images/<id>; anything else (another host, a
    // javascript: URL) is not shown as a link or picture.
    if (msg.kind === "image" && typeof msg.url === "string" && IMAGE_URL.test(msg.url)) {
      const link = el("a", "image-link");
      link.href = msg.url;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      const img = el("img", "chat-image");
      img.alt = msg.content || "image";
      img.src = msg.url;
      link.append(img);
      bubble.append(link);
    } else {
      const text = el("p", "text");
      richText(text, String(msg.content == null ? "" : msg.content), ctx);
      bubble.append(text);
    }
    item.append(avatar(msg.uid, msg.uname, msg.avatar), bubble);
    return item;
  }

  function previousMessage(item) {
    let node = item.previousElementSibling;
    while (node && !node.classList.contains("message")) node = node.previousElementSibling;
    return node;
  }

  function nextMessage(item) {
    let node = item.nextElementSibling;
    while (node && !node.classList.contains("message")) node = node.nextElementSibling;
    return node;
  }

  // The date separator and the author grouping of one message depend only on
  // the message before it: recompute them for a message just placed and for
  // the one after it (whose predecessor it now is).
  function decorate(item) {
    // Data attributes, not classes: other code (and tests) read a message's classes.
    const prev = previousMessage(item);
    // The day is the last dated message's (deleted ones from history have none).
    let dated = prev;
    while (dated && !dated.dataset.day) dated = previousMessage(dated);
    const newDay = !!item.dataset.day && (!dated || dated.dataset.day !== item.dataset.day);
    if (newDay) item.dataset.dayLabel = dayLabel(item.dataset.time);
    else delete item.dataset.dayLabel;
    const grouped = !newDay && !!prev && !!item.dataset.day &&
      prev.dataset.uid === item.dataset.uid && prev.dataset.type === item.dataset.type &&
      !prev.classList.contains("deleted") &&
      new Date(item.dataset.time) - new Date(prev.dataset.time) < GROUP_MS;
    if (grouped) item.dataset.grouped = "";
    else delete item.dataset.grouped;
  }

  function layout(item) {
    decorate(item);
    const next = nextMessage(item);
    if (next) decorate(next);
  }

  return { avatar, colourClass, initials, richText, mentions, message, layout, dayLabel };
})();
