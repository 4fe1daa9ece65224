// Deployment charts: fetch the built-in time series and draw it with uPlot.
// Each chart element gets data-points (how many points it shows) once it has data,
// which is what the browser tests wait for.
(function () {
  "use strict";
  const root = document.getElementById("charts");
  if (!root || typeof uPlot === "undefined") return;

  const pct = (v) => (v == null ? null : v * 100);
  const CHARTS = [
    { id: "chart-requests", unit: "req/s", series: [
      ["requests_per_s", "requests/s", "#3155d4"], ["errors_per_s", "5xx/s", "#c01048"],
      ["forecast_rps", "forecast (predictive)", "#7a5af8"]] },
    { id: "chart-latency", unit: "ms", series: [
      ["p50_latency_ms", "p50", "#12805c"], ["p90_latency_ms", "p90", "#b54708"],
      ["p99_latency_ms", "p99", "#c01048"]] },
    { id: "chart-errors", unit: "%", series: [["error_rate", "5xx %", "#c01048", pct]] },
    { id: "chart-replicas", unit: "", series: [
      ["replicas_ready", "ready", "#12805c"], ["replicas_desired", "desired", "#667085"]] },
    { id: "chart-power", unit: "W", series: [["power_watts", "watts", "#b54708"]] },
  ];
  const plots = {};
  const status = document.getElementById("chart-status");
  let since = root.dataset.since || "1h";

  function size(el) {
    return { width: Math.max(300, el.clientWidth || 500), height: 200 };
  }

  function options(chart, el) {
    return Object.assign(size(el), {
      scales: { x: { time: true } },
      axes: [{}, { label: chart.unit, size: 60 }],
      series: [{}].concat(chart.series.map(([, label, stroke]) => ({
        label, stroke, width: 2, spanGaps: false,
      }))),
    });
  }

  function columns(chart, data) {
    return [data.t].concat(chart.series.map(([key, , , map]) => {
      const values = data.values[key] || data.t.map(() => null);
      return map ? values.map(map) : values;
    }));
  }

  async function refresh() {
    let data;
    try {
      const resp = await fetch(`${root.dataset.seriesUrl}?since=${encodeURIComponent(since)}`,
                               { credentials: "same-origin" });
      if (resp.status === 401) { window.location = "/login"; return; }
      if (!resp.ok) { status.textContent = `cannot load the series (HTTP ${resp.status})`; return; }
      data = await resp.json();
    } catch (err) {
      status.textContent = "cannot load the series";
      return;
    }
    const res = data.resolution_s ? `${data.resolution_s}s points` : `raw points every ${data.interval_s}s`;
    status.textContent = `${data.t.length} points, ${res}`;
    for (const chart of CHARTS) {
      const el = document.getElementById(chart.id);
      if (!el) continue;
      const cols = columns(chart, data);
      if (plots[chart.id]) {
        plots[chart.id].setData(cols);
      } else {
        plots[chart.id] = new uPlot(options(chart, el), cols, el);
      }
      el.dataset.points = String(data.t.length);
    }
  }

  root.querySelectorAll(".range button").forEach((button) => {
    button.addEventListener("click", () => {
      since = button.dataset.since;
      root.querySelectorAll(".range button").forEach((b) => b.classList.toggle("on", b === button));
      refresh();
    });
  });
  window.addEventListener("resize", () => {
    for (const chart of CHARTS) {
      const el = document.getElementById(chart.id);
      if (plots[chart.id] && el) plots[chart.id].setSize(size(el));
    }
  });
  const every = Math.max(2000, 1000 * parseFloat(root.dataset.interval || "5"));
  refresh();
  setInterval(refresh, every);
})();

// Usage page: cost per hour, allocated and idle (data-points once drawn, for the tests).
(function () {
  "use strict";
  const root = document.getElementById("usage-chart");
  if (!root || typeof uPlot === "undefined") return;
  const el = document.getElementById("chart-cost");

  async function draw() {
    let data;
    try {
      const resp = await fetch(`${root.dataset.url}?since=${encodeURIComponent(root.dataset.since)}`,
                               { credentials: "same-origin" });
      if (resp.status === 401) { window.location = "/login"; return; }
      if (!resp.ok) return;
      data = await resp.json();
    } catch (err) {
      return;
    }
    const opts = {
      width: Math.max(300, el.clientWidth || 600), height: 220,
      scales: { x: { time: true } },
      axes: [{}, { label: "USD / hour", size: 80,
                   values: (u, vals) => vals.map((v) => (v === 0 ? "0" : "$" + v.toPrecision(2))) }],
      series: [{}, { label: "allocated", stroke: "#3155d4", width: 2, fill: "rgba(49,85,212,0.1)" },
               { label: "idle", stroke: "#667085", width: 2 }],
    };
    el.innerHTML = "";
    new uPlot(opts, [data.t, data.cost, data.idle], el);
    el.dataset.points = String(data.t.length);
  }
  draw();
  setInterval(draw, 30000);
})();
