// The playground's tools around the conversation; no inline handlers, which the Content-Security-Policy refuses.
// - A button with data-copy-text copies that text (an answer's raw Markdown, not its HTML); one with
//   data-copy-from="#id" copies that element's text (a code snippet). It says "Copied" for a moment.
// - "View code" loads the request as code into the dialog (htmx), which then opens.
// - The conversation's running cost (#pg-cost) asks again when an answer has ended.
(function () {
  "use strict";

  const FEEDBACK_MS = 1500;

  // navigator.clipboard needs a secure context (https, or localhost); over plain http on another host
  // the older selection-and-copy command still works.
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      const copied = document.execCommand("copy");
      area.remove();
      if (copied) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  function feedback(button, label) {
    if (!button.dataset.label) button.dataset.label = button.textContent;
    button.textContent = label;
    clearTimeout(Number(button.dataset.timer));
    button.dataset.timer = String(setTimeout(function () {
      button.textContent = button.dataset.label;
    }, FEEDBACK_MS));
  }

  document.addEventListener("click", function (event) {
    const target = event.target instanceof Element ? event.target : null;
    const button = target && target.closest("[data-copy-text], [data-copy-from]");
    if (!button) return;
    let text = button.getAttribute("data-copy-text");
    if (text === null) {
      const source = document.querySelector(button.dataset.copyFrom);
      text = source ? source.textContent : "";
    }
    copyText(text).then(
      function () { feedback(button, "Copied"); },
      function () { feedback(button, "Copy failed"); }
    );
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    const dialog = document.getElementById("pg-code-dialog");
    if (dialog && event.detail.target && event.detail.target.id === "pg-code-body" && !dialog.open) {
      dialog.showModal();
    }
  });

  function costChanged() {
    const cost = document.getElementById("pg-cost");
    if (cost) htmx.trigger(cost, "pg:answered");
  }

  // A finished answer arrives out of band: a pane (its stream's done event, or its Stop's response),
  // or the whole row once every compared pane has finished.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    const swapped = event.target;
    if (swapped instanceof Element && swapped.matches(".pane:not([data-status=pending]), .answers")) {
      costChanged();
    }
  });
})();
