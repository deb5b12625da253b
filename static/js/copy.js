// Copy buttons: <button data-copy="ID"> puts the text of the element with that id on the clipboard, exactly
// as shown (a new API key, its example, a generated password), and says so on the button for a moment.
// The Clipboard API needs a secure context (https, or localhost); elsewhere the text is selected and
// copied the older way.
(function () {
  "use strict";

  function copyBySelection(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    const copied = document.execCommand("copy");
    return copied ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function say(button, words) {
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = words;
    window.clearTimeout(Number(button.dataset.timer));
    button.dataset.timer = String(window.setTimeout(function () { button.textContent = label; }, 2000));
  }

  document.addEventListener("click", function (event) {
    const button = event.target instanceof Element ? event.target.closest("button[data-copy]") : null;
    const element = button ? document.getElementById(button.dataset.copy) : null;
    if (!element) {
      return;
    }
    const text = element.textContent;
    const copying = navigator.clipboard && window.isSecureContext
      ? navigator.clipboard.writeText(text).catch(function () { return copyBySelection(element); })
      : copyBySelection(element);
    copying.then(function () { say(button, "Copied"); },
                 function () { say(button, "Select and copy it by hand"); });
  });
})();
