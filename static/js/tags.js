// Tag input: an <input data-tags> holding comma-separated names becomes chips. The original input stays the
// field that is submitted (hidden, its value the names joined with commas), so the form works without script.
(function () {
  "use strict";

  function split(text) {
    return text.split(",").map(function (part) { return part.trim(); }).filter(Boolean);
  }

  function enhance(field) {
    var tags = split(field.value);
    var box = document.createElement("div");
    box.className = "tags";
    var entry = document.createElement("input");
    entry.type = "text";
    entry.className = "tags-entry";
    entry.autocomplete = "off";
    entry.placeholder = field.placeholder;
    entry.id = field.id;
    field.removeAttribute("id");
    ["aria-describedby", "aria-invalid"].forEach(function (name) {
      if (field.hasAttribute(name)) entry.setAttribute(name, field.getAttribute(name));
    });
    field.type = "hidden";
    field.parentNode.insertBefore(box, field);

    function render() {
      field.value = tags.join(", ");
      box.querySelectorAll(".tag").forEach(function (chip) { chip.remove(); });
      tags.forEach(function (name, index) {
        var chip = document.createElement("span");
        chip.className = "tag";
        chip.textContent = name;
        var remove = document.createElement("button");
        remove.type = "button";
        remove.textContent = "×";
        remove.setAttribute("aria-label", "Remove " + name);
        remove.addEventListener("click", function () {
          tags.splice(index, 1);
          render();
          entry.focus();
        });
        chip.appendChild(remove);
        box.insertBefore(chip, entry);
      });
    }

    function commit() {
      var names = split(entry.value);
      entry.value = "";
      if (!names.length) return; // nothing typed: the chips stay as they are (a click on one keeps its target)
      names.forEach(function (name) {
        if (tags.indexOf(name) === -1) tags.push(name);
      });
      render();
    }

    entry.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === ",") {
        if (entry.value.trim() || event.key === ",") event.preventDefault();
        if (entry.value.trim()) commit();
      } else if (event.key === "Backspace" && entry.value === "" && tags.length) {
        tags.pop();
        render();
      }
    });
    entry.addEventListener("input", function () {
      if (entry.value.indexOf(",") !== -1) commit(); // a pasted list
    });
    entry.addEventListener("blur", commit);
    if (field.form) field.form.addEventListener("submit", commit);
    box.addEventListener("click", function (event) {
      if (event.target === box) entry.focus();
    });
    box.appendChild(entry);
    render();
  }

  document.querySelectorAll("input[data-tags]").forEach(enhance);
})();
