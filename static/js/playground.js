// The playground's own behaviour; htmx and its SSE extension do the requests and the streaming.
// - Enter sends the prompt, Shift+Enter starts a new line.
// - Stop closes the answer's EventSource, then asks the server to stop the answer's generation; the Stop
//   response swaps the stopped answer in. The request goes out from the transcript, which stays on the
//   page: out-of-band content is placed relative to the element a request came from, and a pane's own
//   button may be gone by the time its answer comes back (another pane's answer redrew the row).
// - Once an answer is done, the estimate is asked again: the conversation it counts has grown.
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
    frozen.textContent = stream.textContent.trim();
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
      document.querySelectorAll(".pane [data-stop]").forEach(stop);
    } else if (target.closest(".pane [data-stop]")) {
      stop(target.closest("[data-stop]"));
    }
  });

  // Stop requests go out one after another: while one is in flight, htmx keeps only the last request
  // queued behind it from the same element, so a third pane's Stop would silently replace the second's.
  let stopping = Promise.resolve();

  function stop(button) {
    if (button.disabled) return;
    closeStream(button.closest(".pane"));
    button.disabled = true;
    button.textContent = "Stopping…";
    stopping = stopping
      .then(function () {
        return htmx.ajax("POST", button.dataset.stop, { source: document.getElementById("transcript"), swap: "none" });
      })
      .then(answered, answered);
  }

  function answered() {
    htmx.trigger(document.body, "pg:answered");
  }

  // Before the message: its swap replaces the pane, and with it the element the later events start from.
  document.body.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (event.detail && event.detail.type === "done") answered();
  });

  // The server says a prompt was sent (HX-Trigger): empty the composer for the next one.
  document.body.addEventListener("pg:sent", function () {
    const form = composer();
    setEditing(false);
    form.elements.prompt.value = "";
    form.elements.prompt.dispatchEvent(new Event("input", { bubbles: true }));
  });
})();
