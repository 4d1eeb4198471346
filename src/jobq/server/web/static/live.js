// jobq dashboard: live updates over Server-Sent Events (GET /live/events).
//
// The server sends at most ~2 `change` events a second however many jobs change (it coalesces).
// On one, this refetches the current page (header X-Live-Fragment: 1) and swaps in the new
// content of every element with `data-live-region` and an id, except one holding keyboard focus.
// At most one fetch is in flight and at most one starts every MIN_GAP_MS; a change arriving
// meanwhile is remembered and fetched once after. The overview's charts listen to the
// `jobq:change` event this dispatches on document (detail: the server's summary).
// document.body.dataset.liveUpdates counts the regions refreshes done (tests read it).
// EventSource reconnects by itself after a dropped connection (the server says retry: 3 s).
"use strict";
(function () {
  var MIN_GAP_MS = 500;

  function start() {
    var regions = document.querySelectorAll("[data-live-region][id]");
    var state = document.querySelector(".live-state");
    if (!regions.length || typeof window.EventSource !== "function") return;

    var fetching = false;
    var pending = false;
    var lastStart = 0;
    var updates = 0;
    document.body.dataset.liveUpdates = "0";

    function say(text, cls) {
      if (!state) return;
      state.textContent = text;
      state.classList.remove("live-on", "live-off");
      if (cls) state.classList.add(cls);
    }

    function refresh() {
      if (fetching) { pending = true; return; }
      var wait = lastStart + MIN_GAP_MS - Date.now();
      if (wait > 0) {
        pending = true;
        window.setTimeout(function () { if (pending && !fetching) { pending = false; refresh(); } }, wait);
        return;
      }
      fetching = true;
      pending = false;
      lastStart = Date.now();
      window.fetch(window.location.href, {
        headers: { "X-Live-Fragment": "1" },
        credentials: "same-origin",
        cache: "no-store",
        redirect: "error"
      }).then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      }).then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live-region][id]").forEach(function (region) {
          if (region.contains(document.activeElement) && document.activeElement !== document.body) return;
          var replacement = fresh.getElementById(region.id);
          if (replacement && replacement.innerHTML !== region.innerHTML) region.innerHTML = replacement.innerHTML;
        });
        updates += 1;
        document.body.dataset.liveUpdates = String(updates);
      }).catch(function () {
        // A failed refresh (a login that ended, a server restarting) waits for the next event.
      }).then(function () {
        fetching = false;
        if (pending) { pending = false; refresh(); }
      });
    }

    var source = new EventSource("/live/events");
    source.addEventListener("open", function () { say("Live", "live-on"); });
    source.addEventListener("error", function () {
      say(source.readyState === EventSource.CLOSED ? "Live updates stopped: reload the page" : "Reconnecting…", "live-off");
    });
    source.addEventListener("change", function (event) {
      var detail = null;
      try { detail = JSON.parse(event.data); } catch (ignored) { detail = null; }
      document.dispatchEvent(new CustomEvent("jobq:change", { detail: detail }));
      refresh();
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
