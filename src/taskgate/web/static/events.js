// taskgate's dashboard: the live events of a running task, on its page. Each
// <section data-events="URL"> listens to the task's server-sent events (the API's own
// stream, read with the session's cookie) and lists them as they come: queued, position,
// started, progress (a streamed answer and its reasoning grow in place), retrying,
// finished. The stream ends with "finished"; the page's live part refreshes itself apart.
// Everything is written as text (textContent), never as HTML.
(function () {
  "use strict";

  function clock() {
    return new Date().toISOString().slice(11, 19);
  }

  function describe(type, d) {
    switch (type) {
      case "queued":
        return "waiting" + (d.position ? ", number " + d.position + " in its queue" : "");
      case "position":
        return "number " + d.position + " in its queue";
      case "started":
        return "attempt " + d.attempt + (d.instance ? " on " + d.instance : "");
      case "retrying":
        return "attempt " + d.attempt + " ended" +
          (d.error && d.error.message ? ": " + d.error.message : "") + "; it will run again";
      case "finished":
        return "ended " + d.status;
      case "progress":
        return JSON.stringify(d.data || {}).slice(0, 200);
      default:
        return JSON.stringify(d).slice(0, 200);
    }
  }

  function watch(section) {
    if (section.dataset.watching) return;
    section.dataset.watching = "1";
    var list = section.querySelector(".event-list");
    var streamed = section.querySelector(".streamed");
    var pieces = { delta: ".answer", reasoning_delta: ".reasoning" };
    var streaming = false;
    var source = new EventSource(section.dataset.events);

    function add(type, text) {
      var item = document.createElement("li");
      item.dataset.event = type;
      var at = document.createElement("span");
      at.className = "at";
      at.textContent = clock();
      var name = document.createElement("b");
      name.textContent = type;
      item.append(at, " ", name, " ", text);
      list.appendChild(item);
    }

    function grow(data) {
      var grew = false;
      Object.keys(pieces).forEach(function (field) {
        if (typeof data[field] !== "string") return;
        var into = streamed.querySelector(pieces[field]);
        into.textContent += data[field];
        if (field === "reasoning_delta") streamed.querySelector(".reasoning-head").hidden = false;
        grew = true;
      });
      if (grew && !streaming) {
        streaming = true;
        streamed.hidden = false;
        add("progress", "streaming the answer");
      }
      return grew;
    }

    ["queued", "position", "started", "progress", "retrying", "finished"].forEach(function (type) {
      source.addEventListener(type, function (event) {
        var d = JSON.parse(event.data);
        if (type === "progress" && grow(d.data || {})) return;
        add(type, describe(type, d));
        if (type === "finished") source.close();
      });
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) add("closed", "the event stream ended");
    };
  }

  function scan(root) {
    if (root.matches && root.matches("[data-events]")) watch(root);
    if (root.querySelectorAll) root.querySelectorAll("[data-events]").forEach(watch);
  }

  document.addEventListener("DOMContentLoaded", function () { scan(document); });
  document.addEventListener("htmx:load", function (event) { scan(event.detail.elt); });
})();
