// Sending images: the file button, a pasted image, or one dropped on the
// conversation; checked against the size limit before anything is sent, and
// uploaded with a progress bar (XMLHttpRequest: fetch reports no upload
// progress). Also the user's own avatar, from the top bar.
"use strict";

window.webchat = window.webchat || {};

webchat.humanSize = function (bytes) {
  const units = [["MiB", 1024 * 1024], ["KiB", 1024]];
  for (const [unit, factor] of units) {
    if (bytes >= factor) {
      const value = bytes / factor;
      return (Number.isInteger(value) ? value : value.toFixed(1)) + " " + unit;
    }
  }
  return bytes + " bytes";
};

// POST a FormData with the CSRF header; onProgress(fraction). Resolves to
// {ok, status, data} like webchat.request, never rejects.
webchat.upload = function (url, form, onProgress) {
  return new Promise(function (resolve) {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRFToken", webchat.csrfToken());
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable && onProgress) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", function () {
      let data = {};
      try { data = JSON.parse(xhr.responseText); } catch (err) { data = { error: xhr.statusText || "unexpected answer" }; }
      if (xhr.status === 429 && !data.retry_after) data.retry_after = Number(xhr.getResponseHeader("Retry-After")) || null;
      resolve({ ok: xhr.status >= 200 && xhr.status < 300, status: xhr.status, data: data });
    });
    xhr.addEventListener("error", function () {
      resolve({ ok: false, status: 0, data: { error: "network error: the upload did not get through" } });
    });
    xhr.send(form);
  });
};

// options: roomId, maxBytes, input (file input), dropZone, content (textarea:
// paste), progress (element), error(text), target() → {uid}|null, done(result).
webchat.imageUploads = function (options) {
  const el = webchat.el;
  const TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
  const progress = options.progress;
  const bar = el("span", "upload-bar");
  const label = el("span", "upload-label");
  progress.replaceChildren(label, el("span", "upload-track"));
  progress.lastChild.append(bar);
  let queue = Promise.resolve();

  function check(file) {
    if (TYPES.indexOf(file.type) === -1) return "Only PNG, JPEG, GIF and WebP images can be sent.";
    if (file.size > options.maxBytes) {
      return "“" + (file.name || "image") + "” is " + webchat.humanSize(file.size) +
        "; images may be at most " + webchat.humanSize(options.maxBytes) + ".";
    }
    return null;
  }

  async function send(file) {
    const refused = check(file);
    if (refused) { options.error(refused); return; }
    options.error("");
    const form = new FormData();
    form.append("file", file, file.name || "pasted-image." + file.type.split("/")[1]);
    const target = options.target();
    form.append("type", target ? "to" : "all");
    if (target) form.append("to_uid", target.uid);
    label.textContent = "Uploading " + (file.name || "image") + "…";
    bar.style.width = "0%";
    progress.hidden = false;
    const result = await webchat.upload("/rooms/" + options.roomId + "/images", form, function (fraction) {
      bar.style.width = Math.round(fraction * 100) + "%";
      label.textContent = "Uploading " + (file.name || "image") + " · " + Math.round(fraction * 100) + "%";
    });
    progress.hidden = true;
    if (result.status === 413 && !(result.data && result.data.limit)) {
      result.data = { error: "That image is too large: images may be at most " + webchat.humanSize(options.maxBytes) + "." };
    }
    options.done(result);
  }

  // One upload at a time, in the order given.
  function enqueue(files) {
    for (const file of files) queue = queue.then(function () { return send(file); });
  }

  function imagesOf(items) {
    return Array.from(items || []).filter(function (file) { return file && /^image\//.test(file.type); });
  }

  options.input.addEventListener("change", function () {
    enqueue(Array.from(options.input.files));
    options.input.value = "";
  });

  options.content.addEventListener("paste", function (event) {
    const files = imagesOf(event.clipboardData && event.clipboardData.files);
    if (!files.length) return; // text: the textarea takes it
    event.preventDefault();
    enqueue(files);
  });

  const zone = options.dropZone;
  let depth = 0; // dragenter/dragleave fire for every child crossed
  function hasFiles(event) {
    return event.dataTransfer && Array.from(event.dataTransfer.types || []).indexOf("Files") !== -1;
  }
  zone.addEventListener("dragenter", function (event) {
    if (!hasFiles(event)) return;
    depth += 1;
    zone.classList.add("dropping");
  });
  zone.addEventListener("dragover", function (event) {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  zone.addEventListener("dragleave", function () {
    depth = Math.max(0, depth - 1);
    if (!depth) zone.classList.remove("dropping");
  });
  zone.addEventListener("drop", function (event) {
    depth = 0;
    zone.classList.remove("dropping");
    if (!hasFiles(event)) return;
    event.preventDefault();
    const files = imagesOf(event.dataTransfer.files);
    if (!files.length) { options.error("Only images can be dropped here."); return; }
    enqueue(files);
  });

  return { send: enqueue, check };
};

// The top bar's avatar: click it to upload your picture (POST /avatar).
// options: input, maxBytes, shown (the top bar's .avatar), error(text), done(url).
webchat.avatarUpload = function (options) {
  options.input.addEventListener("change", async function () {
    const file = options.input.files[0];
    options.input.value = "";
    if (!file) return;
    if (file.size > options.maxBytes) {
      options.error("That picture is " + webchat.humanSize(file.size) + "; avatars may be at most " +
        webchat.humanSize(options.maxBytes) + ".");
      return;
    }
    const form = new FormData();
    form.append("file", file);
    const result = await webchat.upload("/avatar", form);
    if (!result.ok) {
      options.error(webchat.failure(result, "could not change your picture"));
      return;
    }
    options.error("");
    options.done(result.data.avatar);
  });
};
