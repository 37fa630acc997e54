// Keyboard labeling. Verdict keys pick a side as shown; the server maps sides back to A/B.
(function () {
  "use strict";
  let shownAt = performance.now();
  const sessionStart = Date.now();
  let sessionCount = 0;
  const form = () => document.getElementById("label-form");
  // The session's pace, once there is enough of it to mean something (a rate after one label is noise).
  const RATE_MIN_LABELS = 5;
  const RATE_MIN_MS = 2 * 60 * 1000;
  const showRate = () => {
    const el = document.getElementById("session-rate");
    if (!el) return;
    const ms = Date.now() - sessionStart;
    const ready = sessionCount >= RATE_MIN_LABELS && ms >= RATE_MIN_MS;
    el.hidden = !ready;
    el.textContent = ready ? `· this session: ${sessionCount} (about ${Math.round(sessionCount / (ms / 3600000))}/h)` : "";
  };
  document.addEventListener("htmx:afterSwap", () => { shownAt = performance.now(); showRate(); });
  document.addEventListener("submit", (event) => {
    const f = event.target;
    if (f.id !== "label-form") return;
    f.querySelector('input[name="time_spent_ms"]').value = Math.round(performance.now() - shownAt);
    if (!document.getElementById("item").dataset.editing) sessionCount += 1;
  }, true);
  // "Pick a verdict first": said in the form's alert region (read out by screen readers), cleared on a pick.
  const needVerdict = (say) => {
    const hint = document.getElementById("verdict-needed");
    if (hint) hint.textContent = say ? "Pick a verdict first: 1 A better, 2 B better, 3 tie, 4 both bad." : "";
    const group = form() && form().querySelector('[role="radiogroup"][aria-label="Verdict"]');
    if (group && say) group.setAttribute("aria-invalid", "true");
    else if (group) group.removeAttribute("aria-invalid");
  };
  const pick = (name, value) => {
    const input = form() && form().querySelector(`input[name="${name}"][value="${value}"]`);
    if (input) input.checked = true;
    if (input && name === "choice") needVerdict(false);
  };
  document.addEventListener("change", (event) => {
    if (event.target.name === "choice") needVerdict(false);
  });
  const submit = () => {
    const f = form();
    if (!f) return;
    if (!f.querySelector('input[name="choice"]:checked')) {
      needVerdict(true);
      document.getElementById("verdict-needed")?.scrollIntoView({ block: "nearest" });
      return;
    }
    f.querySelector('input[name="time_spent_ms"]').value = Math.round(performance.now() - shownAt);
    // requestSubmit: htmx takes it (label_keys.js holds keys back until htmx has processed a new form).
    f.requestSubmit();
  };
  const click = (id) => { const el = document.getElementById(id); if (el) el.click(); };
  const verdictKeys = { "1": "left", "2": "right", "3": "tie", "4": "both_bad" };
  const strengthKeys = { z: "1", x: "2", c: "3", v: "4" };
  // Keys pressed while a label is being saved wait for the next item (label_keys.js).
  window.labelKeys((event) => {
    const typing = event.target.matches("textarea, input[type=text], input[type=password], select");
    if (typing) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submit(); }
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const reading = window.reading;
    if (reading && (event.key === "j" || event.key === "k")) { event.preventDefault(); reading.scroll("a", event.key === "j" ? 1 : -1); }
    else if (reading && (event.key === "J" || event.key === "K")) { event.preventDefault(); reading.scroll("b", event.key === "J" ? 1 : -1); }
    else if (reading && event.key === "e") reading.toggleAll();
    else if (event.key === "Escape") click("cancel-button");
    else if (verdictKeys[event.key]) pick("choice", verdictKeys[event.key]);
    else if (strengthKeys[event.key]) pick("strength", strengthKeys[event.key]);
    else if (event.key === "Enter" && !event.target.matches("button, a")) { event.preventDefault(); submit(); }
    else if (event.key === "r") { event.preventDefault(); form() && form().querySelector("textarea").focus(); }
    else if (event.key === "s") click("skip-button");
    else if (event.key === "u") click("undo-link");
    else if (event.key === "g") { const g = document.getElementById("guidelines"); g.open = !g.open; }
    else if (event.key === "?") { const h = document.getElementById("help"); h.hidden = !h.hidden; }
  });
  showRate();
})();
