// Form behaviour that would otherwise be inline handlers, which the Content-Security-Policy refuses:
// - <form data-confirm="question"> asks before it submits (deleting a route or a budget);
// - <select data-submit-on-change> submits its form when a choice is made (the audit log's filter);
// - a field with data-show-when="NAME=VALUE" (or "NAME=VALUE OTHER") shows only while its form's field NAME
//   has one of those values (a budget's target, by scope). Without JavaScript every field shows, and the
//   server keeps only what the choice needs.
(function () {
  "use strict";

  function showWhen(form) {
    form.querySelectorAll("[data-show-when]").forEach(function (field) {
      const [name, values] = field.dataset.showWhen.split("=");
      const control = form.elements.namedItem(name);
      if (!control || !("value" in control)) {
        return;
      }
      (field.closest(".field") || field).hidden = !values.split(" ").includes(control.value);
    });
  }

  function showAll() {
    document.querySelectorAll("form").forEach(function (form) {
      if (form.querySelector("[data-show-when]")) {
        showWhen(form);
      }
    });
  }

  showAll();
  // Back and forward restore the choices a form had: show what they need.
  window.addEventListener("pageshow", showAll);

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  document.addEventListener("change", function (event) {
    const field = event.target;
    if (field instanceof HTMLSelectElement && field.hasAttribute("data-submit-on-change") && field.form) {
      field.form.requestSubmit();
    }
    if (field instanceof HTMLElement && field.form && field.form.querySelector("[data-show-when]")) {
      showWhen(field.form);
    }
  });
})();
