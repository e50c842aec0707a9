// Small line plots on <canvas>: axes, min/max ticks, a legend. No dependencies.
"use strict";
const ConsolePlot = (() => {
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  function fmt(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e4 || a < 1e-2)) return v.toExponential(1);
    return a >= 100 ? v.toFixed(0) : v.toFixed(a >= 10 ? 1 : 2);
  }

  // series: [{name, points: [[x, y], ...]}]; opts: {xmin, xmax, xlabel, empty}
  function lines(canvas, series, opts = {}) {
    const ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height;
    const pad = {l: 52, r: 10, t: 10, b: 34};
    ctx.clearRect(0, 0, W, H);
    ctx.font = "11px system-ui, sans-serif";
    const ys = series.flatMap(s => s.points.map(p => p[1])).filter(Number.isFinite);
    if (!ys.length) {
      ctx.fillStyle = "#6b7480";
      ctx.fillText(opts.empty || "no data yet", W / 2 - 30, H / 2);
      return;
    }
    let ymin = Math.min(...ys), ymax = Math.max(...ys);
    if (ymin === ymax) { ymin -= 1; ymax += 1; }
    const xs = series.flatMap(s => s.points.map(p => p[0]));
    const xmin = opts.xmin ?? Math.min(...xs), xmax = opts.xmax ?? Math.max(...xs);
    const xspan = xmax - xmin || 1, yspan = ymax - ymin;
    const px = x => pad.l + (x - xmin) / xspan * (W - pad.l - pad.r);
    const py = y => H - pad.b - (y - ymin) / yspan * (H - pad.t - pad.b);

    ctx.strokeStyle = "#d8dde3";
    ctx.fillStyle = "#6b7480";
    ctx.beginPath();
    for (const f of [0, 0.5, 1]) {
      const y = ymin + f * yspan;
      ctx.moveTo(pad.l, py(y)); ctx.lineTo(W - pad.r, py(y));
      ctx.fillText(fmt(y), 4, py(y) + 4);
    }
    ctx.stroke();
    ctx.fillText(fmt(xmin), pad.l, H - pad.b + 14);
    ctx.fillText(fmt(xmax), W - pad.r - 24, H - pad.b + 14);
    if (opts.xlabel) ctx.fillText(opts.xlabel, W / 2 - 30, H - pad.b + 14);

    let lx = pad.l;
    series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let pen = false;
      for (const [x, y] of s.points) {
        if (!Number.isFinite(y)) { pen = false; continue; }
        if (pen) ctx.lineTo(px(x), py(y)); else ctx.moveTo(px(x), py(y));
        pen = true;
      }
      ctx.stroke();
      ctx.fillStyle = color;
      ctx.fillRect(lx, H - 12, 8, 8);
      ctx.fillStyle = "#1d2430";
      ctx.fillText(s.name, lx + 11, H - 4);
      lx += ctx.measureText(s.name).width + 24;
    });
    ctx.lineWidth = 1;
  }

  return {lines};
})();
