// asyncgate console: draws the charts whose data the server embedded as JSON (Chart.js, vendored).
// <canvas data-chart="KIND" data-source="ID"> reads <script type="application/json" id="ID">.
// Kinds: throughput, async-rate (line per insurer), calibration (reliability curve), codes (bars).
// When every chart is drawn, <body data-charts="N"> tells how many (the browser tests wait for it).
(function () {
  "use strict";
  var palette = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];

  function data(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function lines(series, percent) {
    return series.map(function (s, i) {
      return {
        label: s.label,
        data: s.data,
        borderColor: palette[i % palette.length],
        backgroundColor: palette[i % palette.length],
        spanGaps: false,
        pointRadius: 1.5,
        borderWidth: 2,
        tension: 0.2
      };
    });
  }

  function base(yTitle, percent) {
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom" } },
      scales: {
        x: { ticks: { maxTicksLimit: 12, autoSkip: true } },
        y: {
          beginAtZero: true,
          max: percent ? 1 : undefined,
          title: { display: true, text: yTitle },
          ticks: percent ? { callback: function (v) { return Math.round(v * 100) + "%"; } } : {}
        }
      }
    };
  }

  var builders = {
    "throughput": function (d) {
      return { type: "line", data: { labels: d.labels, datasets: lines(d.throughput) }, options: base("orders / hour", false) };
    },
    "async-rate": function (d) {
      return { type: "line", data: { labels: d.labels, datasets: lines(d.async_rate) }, options: base("kept async", true) };
    },
    "calibration": function (d) {
      var options = base("observed: succeeded later", true);
      options.scales.x = { type: "linear", min: 0, max: 1, title: { display: true, text: "predicted probability (first failure)" } };
      options.interaction = { mode: "nearest", intersect: true };
      return {
        type: "scatter",
        data: {
          datasets: [
            { label: "perfect calibration", data: [{ x: 0, y: 0 }, { x: 1, y: 1 }], showLine: true, borderColor: "#9ca3af", borderDash: [6, 4], pointRadius: 0 },
            { label: "live (orders per bin in tooltip)", data: d.points, showLine: true, borderColor: palette[0], backgroundColor: palette[0], pointRadius: 4 }
          ]
        },
        options: options
      };
    },
    "codes": function (d) {
      var options = base("failed calls", false);
      options.indexAxis = "y";
      options.plugins.legend = { display: false };
      options.scales = { x: { beginAtZero: true }, y: { ticks: { autoSkip: false } } };
      return { type: "bar", data: { labels: d.labels, datasets: [{ label: "failed calls", data: d.data, backgroundColor: palette[0] }] }, options: options };
    }
  };

  function draw() {
    var drawn = 0;
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var build = builders[canvas.dataset.chart];
      var d = data(canvas.dataset.source);
      if (build && d && typeof Chart !== "undefined") {
        new Chart(canvas, build(d));
        drawn += 1;
      }
    });
    document.body.dataset.charts = String(drawn);
  }

  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(); confirmForms(); });
})();
