// Form behaviour that would otherwise be inline handlers, which the Content-Security-Policy refuses:
// - <form data-confirm="question"> asks before it submits (deleting a route or a budget);
// - <select data-submit-on-change> submits its form when a choice is made (the audit log's filter).
(function () {
  "use strict";

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
  });
})();
