// Step labeling by keyboard: j/k move between steps, 1/2/3 rate +1/0/-1, f flags.
(function () {
  "use strict";
  let shownAt = performance.now();
  let current = 0;
  const steps = () => Array.from(document.querySelectorAll("li.step"));
  const form = () => document.getElementById("label-form");
  const mode = () => (document.getElementById("item") || {}).dataset?.mode;
  const focus = (i) => {
    const all = steps();
    if (!all.length) return;
    current = Math.max(0, Math.min(i, all.length - 1));
    all.forEach((li, k) => li.classList.toggle("current", k === current));
    all[current].scrollIntoView({ block: "nearest" });
  };
  // First-error mode: steps after the first -1 are not rated (stored as unlabeled).
  const refresh = () => {
    if (mode() !== "first_error") return;
    let seenError = false;
    steps().forEach((li) => {
      li.classList.toggle("after-error", seenError);
      li.querySelectorAll('input[type="radio"]').forEach((r) => { r.disabled = seenError; if (seenError) r.checked = false; });
      if (li.querySelector('input[value="-1"]:checked')) seenError = true;
    });
    const finish = form() && form().querySelector('select[name="finish_reason"]');
    if (finish && seenError && finish.value === "solution") finish.value = "found_error";
  };
  // A step marked as still to rate stops being marked once it has a rating.
  const rated = (li) => {
    li.classList.remove("missing");
    li.querySelector("[aria-invalid]")?.removeAttribute("aria-invalid");
  };
  const rate = (value) => {
    const li = steps()[current];
    const input = li && li.querySelector(`input[type="radio"][value="${value}"]`);
    if (!input || input.disabled) return;
    input.checked = true;
    rated(li);
    refresh();
    if (!(mode() === "first_error" && value === "-1")) focus(current + 1);
  };
  // A refused submit comes back with the time already spent and the steps still to rate marked:
  // count on from that time, and start at the first step that is missing.
  const start = () => {
    const spent = parseInt(form()?.querySelector('input[name="time_spent_ms"]')?.value || "", 10);
    shownAt = performance.now() - (Number.isFinite(spent) ? spent : 0);
    const missing = steps().findIndex((li) => li.classList.contains("missing"));
    focus(Math.max(missing, 0));
    refresh();
  };
  document.addEventListener("htmx:afterSwap", start);
  document.addEventListener("change", (event) => {
    const li = event.target.closest && event.target.closest("li.step");
    if (li && event.target.type === "radio") rated(li);
    refresh();
  });
  document.addEventListener("submit", (event) => {
    if (event.target.id === "label-form") {
      event.target.querySelector('input[name="time_spent_ms"]').value = Math.round(performance.now() - shownAt);
    }
  }, true);
  const click = (id) => { const el = document.getElementById(id); if (el) el.click(); };
  // Keys pressed while a label is being saved wait for the next item (label_keys.js).
  window.labelKeys((event) => {
    if (event.target.matches("textarea, input[type=text], select")) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const k = event.key;
    if (k === "j" || k === "ArrowDown") { event.preventDefault(); focus(current + 1); }
    else if (k === "k" || k === "ArrowUp") { event.preventDefault(); focus(current - 1); }
    else if (k === "1") rate("1");
    else if (k === "2") rate("0");
    else if (k === "3") rate("-1");
    else if (k === "f") { const box = steps()[current]?.querySelector('input[type="checkbox"]'); if (box) box.checked = !box.checked; }
    else if (k === "y" || k === "n") { const r = form()?.querySelector(`input[name="outcome"][value="${k === "y" ? "correct" : "incorrect"}"]`); if (r) r.checked = true; }
    else if (k === "Enter" && !event.target.matches("button, a")) { event.preventDefault(); form()?.requestSubmit(); }
    else if (k === "s") click("skip-button");
    else if (k === "u") click("undo-link");
    else if (k === "Escape") click("cancel-button");
    else if (k === "g") { const g = document.getElementById("guidelines"); g.open = !g.open; }
    else if (k === "?") { const h = document.getElementById("help"); h.hidden = !h.hidden; }
  });
  start();
})();
