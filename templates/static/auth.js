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
    });
    submit.disabled = false;
    if (!result.ok) {
      webchat.showError(error, result.data.error || "something went wrong");
      return;
    }
    const next = form.elements.next.value;
    // Only a path on this site: never let ?next= send someone elsewhere.
    window.location.assign(next.startsWith("/") && !next.startsWith("//") ? next : "/");
  });
});
