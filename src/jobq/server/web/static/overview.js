// jobq overview: the last hour's charts (uPlot, vendored in /static/vendor), fed by
// GET /live/history. Points are sampled server-side every few seconds, so the charts refetch
// at most once per sample interval, and only when a `jobq:change` event (live.js, itself
// coalesced) said something happened since, or after a minute without one (the time axis
// moves on). Each chart's numbers are also written into its caption for screen readers.
"use strict";
(function () {
  var IDLE_REFRESH_MS = 60000;

  function fmt(n) {
    return n >= 100 ? Math.round(n).toLocaleString() : (Math.round(n * 10) / 10).toLocaleString();
  }

  function start() {
    var throughputEl = document.getElementById("chart-throughput");
    var depthEl = document.getElementById("chart-depth");
    if (!throughputEl || !depthEl || typeof window.uPlot !== "function") return;

    var intervalMs = 5000;
    var dirty = false;
    var lastFetch = 0;
    var fetching = false;
    var charts = null;

    function width(el) { return Math.max(300, el.clientWidth || 600); }

    function build(data) {
      var axes = [{}, { size: 60 }];
      var throughput = new window.uPlot({
        width: width(throughputEl), height: 220,
        scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
        series: [
          {},
          { label: "started/s", stroke: "#0a58ca", width: 2 },
          { label: "finished/s", stroke: "#116329", width: 2 },
          { label: "failed/s", stroke: "#a40e26", width: 2 }
        ],
        axes: axes
      }, [data[0], data[1], data[2], data[3]], throughputEl);
      var depth = new window.uPlot({
        width: width(depthEl), height: 220,
        scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
        series: [{}, { label: "pending", stroke: "#7d4e00", fill: "rgba(125,78,0,0.12)", width: 2 }],
        axes: axes
      }, [data[0], data[4]], depthEl);
      return { throughput: throughput, depth: depth };
    }

    function columns(points) {
      var cols = [[], [], [], [], []];
      points.forEach(function (p) { for (var i = 0; i < 5; i++) cols[i].push(p[i]); });
      return cols;
    }

    function describe(cols) {
      var n = cols[0].length;
      var t = document.getElementById("throughput-summary");
      var d = document.getElementById("depth-summary");
      if (!n) return;
      var when = new Date(cols[0][n - 1] * 1000).toLocaleTimeString();
      var peak = function (c) { return Math.max.apply(null, c); };
      t.textContent = "Latest sample (" + when + "): " + fmt(cols[1][n - 1]) + " started, " +
        fmt(cols[2][n - 1]) + " finished, " + fmt(cols[3][n - 1]) + " failed per second. Peaks over " +
        n + " samples: " + fmt(peak(cols[1])) + " started, " + fmt(peak(cols[2])) + " finished, " +
        fmt(peak(cols[3])) + " failed per second.";
      d.textContent = "Latest sample (" + when + "): " + cols[4][n - 1].toLocaleString() +
        " pending jobs. Peak over " + n + " samples: " + peak(cols[4]).toLocaleString() + ".";
    }

    function load() {
      if (fetching) return;
      fetching = true;
      dirty = false;
      lastFetch = Date.now();
      window.fetch("/live/history", { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(function (body) {
          intervalMs = Math.max(1000, (body.interval_s || 5) * 1000);
          var cols = columns(body.points || []);
          if (!charts) charts = build(cols);
          else {
            charts.throughput.setData([cols[0], cols[1], cols[2], cols[3]]);
            charts.depth.setData([cols[0], cols[4]]);
          }
          describe(cols);
          document.body.dataset.chartPoints = String(cols[0].length);
        })
        .catch(function () { /* the next tick tries again */ })
        .then(function () { fetching = false; });
    }

    document.addEventListener("jobq:change", function () { dirty = true; });
    window.setInterval(function () {
      var since = Date.now() - lastFetch;
      if ((dirty && since >= intervalMs) || since >= IDLE_REFRESH_MS) load();
    }, 1000);
    window.addEventListener("resize", function () {
      if (!charts) return;
      charts.throughput.setSize({ width: width(throughputEl), height: 220 });
      charts.depth.setSize({ width: width(depthEl), height: 220 });
    });
    load();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
