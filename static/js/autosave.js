// Autosave for the answer form: each question is saved on its own shortly after it changes.
// The page works without this script (the 保存する button posts the whole section).
(function () {
  "use strict";
  var form = document.getElementById("answers");
  if (!form || !form.dataset.autosaveUrl || !window.fetch) { return; }
  var IDLE_MS = 3000;  // save after a pause in typing, or at once when a field is left
  var timers = {};
  var saving = {};  // question -> a save is on its way
  var again = {};   // question -> changed while it was: save once more when the reply is in
  var token = form.querySelector("input[name=csrf_token]").value;

  function questionOf(element) {
    var box = element.closest("[data-question]");
    return box ? box.dataset.question : null;
  }

  function fieldsOf(key) {
    var prefix = "a:" + key;
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.name && (el.name === prefix || el.name.indexOf(prefix + ":") === 0);
    });
  }

  function status(key, text, isError) {
    var node = form.querySelector('[data-status-for="' + CSS.escape(key) + '"]');
    if (!node) { return; }
    node.textContent = text;
    node.classList.toggle("autosave-status--error", Boolean(isError));
  }

  // One save per question at a time: the next one must carry the revision the previous reply
  // gave, or the server would take the vendor's own earlier save for someone else's (409).
  function save(key) {
    if (saving[key]) { again[key] = true; return; }
    saving[key] = true;
    var body = new URLSearchParams();
    body.append("csrf_token", token);
    body.append("question", key);
    var revision = form.querySelector('input[name="r:' + CSS.escape(key) + '"]');
    if (revision) { body.append(revision.name, revision.value); }
    fieldsOf(key).forEach(function (el) {
      if ((el.type === "checkbox" || el.type === "radio") && !el.checked) { return; }
      if (el.type === "file" || el.disabled) { return; }
      body.append(el.name, el.value);
    });
    status(key, "保存しています…", false);
    fetch(form.dataset.autosaveUrl, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" }
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    }).then(function (result) {
      if (result.ok && revision && result.data.revision !== undefined) {
        revision.value = String(result.data.revision);
      }
      status(key, result.data.message, !result.ok);
    }).catch(function () {
      status(key, "自動保存できませんでした。「保存する」ボタンで保存してください。", true);
    }).then(function () {
      saving[key] = false;
      if (again[key]) { again[key] = false; save(key); }
    });
  }

  function schedule(event) {
    var key = questionOf(event.target);
    if (!key || event.target.type === "file") { return; }
    clearTimeout(timers[key]);
    timers[key] = setTimeout(function () { save(key); }, event.type === "input" ? IDLE_MS : 0);
  }

  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
}());
