// The overview's charts: uPlot (vendored, served from /static) over the data the page carries.
(function () {
  "use strict";
  var el = document.getElementById("chart-data");
  if (!el || typeof uPlot === "undefined") return;
  var data = JSON.parse(el.textContent);
  var colors = ["#1f6feb", "#d29922", "#2da44e"];
  function draw(id, d, bars) {
    var box = document.getElementById(id);
    if (!box || !d.x.length) return;
    var series = [{}];
    var cols = [d.x];
    d.series.forEach(function (s, i) {
      series.push({
        label: s.label,
        stroke: colors[i % colors.length],
        fill: i === 0 ? "rgba(31,111,235,0.12)" : undefined,
        width: 2,
        paths: bars && uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.8] }) : undefined,
        points: { show: d.x.length < 60 },
      });
      cols.push(s.y);
    });
    var opts = {
      width: Math.max(320, box.clientWidth || 600),
      height: 240,
      series: series,
      axes: [{}, { size: 96, values: function (u, vals) {
        return vals.map(function (v) { return v == null ? "" : v.toLocaleString("en-US"); });
      } }],
    };
    box.setAttribute("data-points", String(d.x.length));
    new uPlot(opts, cols, box);
  }
  draw("chart-revenue", data.revenue, false);
  draw("chart-taps", data.taps, true);
})();
