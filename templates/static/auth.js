// Login and registration: post JSON, show the server's error, go on when it works.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const form = document.getElementById("auth-form");
  const error = document.getElementById("form-error");
  const submit = document.getElementById("submit");
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    webchat.showError(error, "");
    submit.disabled = true;
    const result = await webchat.request("POST", form.getAttribute("action"), {
      name: form.elements.name.value,
      password: form.elements.password.value,
      next: form.elements.next.value,
    });
    submit.disabled = false;
    if (!result.ok) {
      // The fields keep what was typed: only the message changes.
      webchat.showError(error, webchat.errorMessage(result));
      return;
    }
    // The server already checked it; check again, never trusting the query string.
    window.location.assign(webchat.safeNext(result.data.next || form.elements.next.value));
  });
});
