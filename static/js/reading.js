// Reading model answers on the labeling pages (pairwise and steps).
//
// * An answer taller than its box says so ("More below") and can be expanded to its full height; the
//   cue goes once the answer is scrolled to its end.
// * window.reading.scroll("a" | "b", +1 | -1) scrolls an answer by most of its box (keys in annotate.js).
// * After a submit the new item comes with data-saved="1": "Saved" is shown for a moment in the page's
//   status line (role="status", read out by screen readers).
// Everything is done with classes and the hidden attribute: the Content-Security-Policy allows no inline style.
(function () {
  "use strict";
  const SLACK = 4; // px: rounding of heights

  const atEnd = (answer) => answer.scrollTop + answer.clientHeight >= answer.scrollHeight - SLACK;

  const update = (section) => {
    const answer = section.querySelector(".answer");
    const bar = section.querySelector(".more-below");
    if (!answer || !bar) return;
    const expanded = section.classList.contains("expanded");
    const overflows = expanded || answer.scrollHeight > answer.clientHeight + SLACK;
    section.classList.toggle("overflows", overflows);
    section.classList.toggle("at-end", !expanded && overflows && atEnd(answer));
    bar.hidden = !overflows;
  };

  const toggle = (section, expand) => {
    const button = section.querySelector(".more-below .expand");
    const on = expand === undefined ? !section.classList.contains("expanded") : expand;
    section.classList.toggle("expanded", on);
    if (button) {
      button.textContent = on ? "Collapse" : "Expand";
      button.setAttribute("aria-expanded", on ? "true" : "false");
    }
    update(section);
  };

  const sections = () => Array.from(document.querySelectorAll("#item .response"));

  const setUp = () => {
    sections().forEach((section) => {
      const answer = section.querySelector(".answer");
      if (!answer || answer.dataset.reading) return;
      answer.dataset.reading = "1";
      answer.addEventListener("scroll", () => update(section), { passive: true });
      section.querySelector(".more-below .expand")?.addEventListener("click", () => toggle(section));
      update(section);
    });
  };

  const scroll = (side, direction) => {
    const section = document.querySelector(`#item .response[data-side="${side}"]`);
    if (!section) return;
    const answer = section.querySelector(".answer");
    if (section.classList.contains("expanded")) {
      // Expanded, the answer is as tall as its text: the page scrolls instead, within the answer.
      window.scrollBy({ top: direction * window.innerHeight * 0.6, behavior: "smooth" });
      return;
    }
    answer.scrollBy({ top: direction * answer.clientHeight * 0.8, behavior: "smooth" });
  };

  let toastTimer = null;
  const saved = () => {
    const item = document.getElementById("item");
    const status = document.getElementById("saved-status");
    if (!item || !status || item.dataset.saved !== "1") return;
    item.dataset.saved = "";
    status.textContent = "Saved ✓";
    status.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { status.classList.remove("show"); status.textContent = ""; }, 2500);
  };

  document.addEventListener("htmx:afterSettle", () => { setUp(); saved(); });
  window.addEventListener("resize", () => sections().forEach(update));
  window.reading = {
    scroll,
    toggleAll: () => {
      const all = sections();
      const expand = !all.every((s) => s.classList.contains("expanded"));
      all.forEach((s) => toggle(s, expand));
    },
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setUp);
  else setUp();
  // Fonts and MathML can change heights after the first layout.
  window.addEventListener("load", () => sections().forEach(update));
})();
