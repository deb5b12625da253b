// The playground's own behaviour; htmx and its SSE extension do the requests and the streaming.
// - Enter sends the prompt, Shift+Enter starts a new line.
// - Stop closes the answer's EventSource before its Stop request goes out: the server sees the browser
//   leave, saves the partial answer as stopped, and the Stop response swaps that answer in.
// - "Edit and resend" puts the last prompt back in the composer; sending then replaces that turn.
(function () {
  "use strict";

  function composer() {
    return document.getElementById("composer");
  }

  function setEditing(on, text) {
    const form = composer();
    if (!form) return;
    form.elements.edit_last.value = on ? "1" : "";
    form.querySelector(".pg-editing").hidden = !on;
    form.querySelector(".pg-send-button").textContent = on ? "Resend" : "Send";
    if (on) {
      form.elements.prompt.value = text;
      form.elements.prompt.focus();
      form.elements.prompt.dispatchEvent(new Event("input", { bubbles: true }));
    }
  }

  // Replacing the streaming element through htmx makes htmx clean it up, and the SSE extension closes
  // the EventSource of an element it cleans up. What already arrived stays on screen.
  function closeStream(pane) {
    const stream = pane && pane.querySelector("[sse-connect]");
    if (!stream) return;
    const frozen = document.createElement("div");
    frozen.className = "answer-text";
    frozen.textContent = stream.textContent;
    htmx.swap(stream, frozen.outerHTML, { swapStyle: "outerHTML" });
  }

  document.addEventListener("keydown", function (event) {
    const field = event.target;
    if (!(field instanceof HTMLTextAreaElement) || field.name !== "prompt") return;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    if (field.value.trim() && !field.form.querySelector(".pg-send-button").disabled) {
      field.form.requestSubmit();
    }
  });

  document.addEventListener("click", function (event) {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const edit = target.closest("[data-edit-last]");
    if (edit) {
      setEditing(true, edit.dataset.prompt);
    } else if (target.closest("[data-cancel-edit]")) {
      setEditing(false);
    } else if (target.closest("[data-stop-all]")) {
      document.querySelectorAll(".pane [data-stop]").forEach(function (button) { button.click(); });
    }
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    const elt = event.detail.elt;
    if (elt instanceof Element && elt.matches("[data-stop]")) {
      closeStream(elt.closest(".pane"));
      elt.disabled = true;
      elt.textContent = "Stopping…";
    }
  });

  // The server says a prompt was sent (HX-Trigger): empty the composer for the next one.
  document.body.addEventListener("pg:sent", function () {
    const form = composer();
    setEditing(false);
    form.elements.prompt.value = "";
    form.elements.prompt.dispatchEvent(new Event("input", { bubbles: true }));
  });
})();
