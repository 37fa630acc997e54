// Labeling keys, serialised with the requests they start (pairwise and steps pages).
//
// A key pressed while a label is being saved waits for the next item. Handled at once it would act on
// the old form: label the wrong item, be dropped, or, in the moment between the swap and htmx processing
// the new form (the settle delay), submit that form natively: a full page reload. So from the start of a
// request on #item until the new #item has settled, keys are queued in order, and replayed once it has.
(function () {
  "use strict";
  const typingIn = (el) => el && el.matches && el.matches("textarea, input[type=text], input[type=password], select");
  window.labelKeys = function (handle) {
    let busy = false;
    const queue = [];
    const drain = () => {
      while (!busy && queue.length) handle(queue.shift());
    };
    const aboutItem = (event) => {
      const elt = event.detail && event.detail.elt;
      const target = event.detail && event.detail.target;
      return Boolean((elt && elt.closest && elt.closest("#item")) || (target && target.id === "item"));
    };
    document.addEventListener("htmx:beforeRequest", (event) => {
      if (aboutItem(event)) busy = true;
    });
    // No swap follows a failed request (network error, 5xx): keep nothing queued for an item that did not change.
    document.addEventListener("htmx:afterRequest", (event) => {
      if (aboutItem(event) && !event.detail.successful) {
        busy = false;
        queue.length = 0;
      }
    });
    // After the settle htmx has processed the new item: its form submits through htmx.
    document.addEventListener("htmx:afterSettle", () => {
      if (!busy) return;
      // Still busy until the queue is replayed, so that a key pressed meanwhile takes its turn after
      // the queued ones; the page's own afterSettle listeners (timer, focus) run first.
      setTimeout(() => {
        busy = false;
        drain();
      }, 0);
    });
    document.addEventListener("keydown", (event) => {
      if (!busy) {
        handle(event);
        return;
      }
      if (typingIn(event.target)) {
        // Text goes to its field as usual; a submit from a field waits for nothing: it is dropped.
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) event.preventDefault();
        return;
      }
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      event.preventDefault();
      queue.push({ key: event.key, ctrlKey: false, metaKey: false, altKey: false, target: document.body,
        preventDefault() {} });
    });
    return { busy: () => busy };
  };
})();
