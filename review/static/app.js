// vigil review: keyboard triage. Plain script, no dependencies; the pages work without it.
(function () {
  "use strict";
  var page = document.body.getAttribute("data-page");

  function typing(event) {
    var t = event.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" ||
      t.isContentEditable);
  }
  function click(selector) {
    var el = document.querySelector(selector);
    if (el) { el.click(); return true; }
    return false;
  }
  function submit(formId) {
    var form = document.getElementById(formId);
    if (form) { form.requestSubmit ? form.requestSubmit() : form.submit(); return true; }
    return false;
  }

  // Payment times: the page prints them in UTC; beside each, the analyst's own zone.
  function localTime(iso, short) {
    var moment = new Date(iso);
    if (isNaN(moment.getTime())) { return ""; }
    var parts = {};
    new Intl.DateTimeFormat("en-CA", {
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
      second: "2-digit", hourCycle: "h23", timeZoneName: "short"
    }).formatToParts(moment).forEach(function (p) { parts[p.type] = p.value; });
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    if (short) {
      return parts.month + "-" + parts.day + " " + parts.hour + ":" + parts.minute + " " +
        (parts.timeZoneName || "") + " (yours)";
    }
    return parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" +
      parts.minute + ":" + parts.second + " " + (parts.timeZoneName || "") +
      (zone ? " (" + zone + ", your time)" : " (your time)");
  }
  Array.prototype.forEach.call(document.querySelectorAll(".local-time[data-utc]"), function (el) {
    var short = el.hasAttribute("data-short");
    var shown = localTime(el.getAttribute("data-utc"), short);
    if (shown) { el.textContent = (short ? "" : " · ") + shown; }
  });

  var help = document.getElementById("help");
  var helpToggle = document.getElementById("help-toggle");
  if (helpToggle && help) {
    helpToggle.addEventListener("click", function () { help.hidden = !help.hidden; });
  }

  // Queue: j/k move a selection over the rows, Enter opens, x ticks for a bulk verdict.
  var rows = Array.prototype.slice.call(document.querySelectorAll("#queue-table tr.item"));
  var current = -1;
  function select(i) {
    if (!rows.length) { return; }
    current = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, j) { r.classList.toggle("selected", j === current); });
    rows[current].scrollIntoView({ block: "nearest" });
  }
  rows.forEach(function (row, i) {
    row.addEventListener("click", function (event) {
      if (event.target.closest("a, input, select, button")) { return; }
      select(i);
    });
    row.addEventListener("dblclick", function () { window.location = row.getAttribute("data-href"); });
  });

  // Case page: the submit button pressed decides the verdict; remember it for the form.
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (typing(event)) {
      if (event.key === "Escape") { event.target.blur(); }
      return;
    }
    var key = event.key;
    if (key === "?") { if (help) { help.hidden = !help.hidden; } return; }
    if (page === "queue") {
      if (key === "j") { select(current + 1); }
      else if (key === "k") { select(current - 1); }
      else if (key === "Enter" && current >= 0) { window.location = rows[current].getAttribute("data-href"); }
      else if (key === "x" && current >= 0) {
        var box = rows[current].querySelector("input[type=checkbox]");
        if (box) { box.checked = !box.checked; }
      }
      else if (key === "c") { submit("claim-next-form"); }
      else if (key === "z") { submit("undo-form"); }
      else { return; }
      event.preventDefault();
      return;
    }
    if (page === "case") {
      if (key === "f") { click("button.v.fraud"); }
      else if (key === "n") { click("button.v.not_fraud"); }
      else if (key === "u") { click("button.v.unsure"); }
      else if (key === "e") { var note = document.getElementById("note"); if (note) { note.focus(); } }
      else if (key === "r") { var rc = document.getElementById("reason-code"); if (rc) { rc.focus(); } }
      else if (key === "z") { submit("undo-form"); }
      else if (key === "j" || key === "c") { submit("claim-next-form"); }
      else if (key === "k") { window.history.back(); }
      else { return; }
      event.preventDefault();
    }
  });
})();
