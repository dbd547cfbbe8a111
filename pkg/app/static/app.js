// scalestack blog: small progressive enhancements; every page works without it.
"use strict";
document.addEventListener("submit", function (ev) {
  var form = ev.target;
  var msg = form.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) { ev.preventDefault(); return; }
  // Guard against double submits on slow links.
  var button = form.querySelector("button[type=submit]");
  if (button && !msg) { setTimeout(function () { button.disabled = true; }, 0); }
});
document.addEventListener("change", function (ev) {
  var input = ev.target;
  if (input.type !== "file" || !input.files || !input.files[0]) return;
  var max = 5 * 1024 * 1024;
  input.setCustomValidity(input.files[0].size > max ? "The image is over 5 MB." : "");
  input.reportValidity();
});
