// A small line chart on a canvas: time on x, several series on y, redrawn at most once per
// animation frame however often its data changes. Colours come from CSS custom properties, so
// light and dark themes need no code.

const pending = new Set();
let scheduled = false;

// Colours, read once per frame for every chart (the theme's custom properties on :root).
let palette = null;

function flush() {
  scheduled = false;
  const charts = [...pending];
  pending.clear();
  const style = getComputedStyle(document.documentElement);
  const cache = new Map();
  palette = (v) => {
    if (!cache.has(v)) cache.set(v, style.getPropertyValue(v).trim() || '#888');
    return cache.get(v);
  };
  // Every size first, then every drawing: resizing a canvas dirties the layout, and a size read
  // after it would lay the page out again, once per chart.
  const sizes = charts.map((c) => [c.canvas.clientWidth, c.canvas.clientHeight]);
  charts.forEach((c, i) => c.draw(sizes[i]));
  palette = null;
}

/** Draw calls made since the page loaded (the speed test reads it). */
export const stats = { draws: 0, drawMs: 0 };

export class LineChart {
  /**
   * `lines`: `[{key, label, colorVar, dash?}]` — which arrays of the data to draw.
   * `format(v)`: the y-axis label text.
   */
  constructor(canvas, { lines, format = (v) => String(v) }) {
    this.canvas = canvas;
    this.lines = lines;
    this.format = format;
    this.data = null;
    canvas.setAttribute('role', 'img');
  }

  /** New data (`{x: [s], <key>: [number|null]}`); drawn at the next frame. */
  set(data) {
    this.data = data;
    this.schedule();
  }

  schedule() {
    pending.add(this);
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(flush);
    }
  }

  draw([width, height] = [this.canvas.clientWidth, this.canvas.clientHeight]) {
    const t0 = performance.now();
    const { canvas, data } = this;
    const ratio = window.devicePixelRatio || 1;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const style = palette ? null : getComputedStyle(document.documentElement);
    const color = palette ?? ((v) => style.getPropertyValue(v).trim() || '#888');
    const x = data?.x ?? [];
    let lo = Infinity;
    let hi = -Infinity;
    for (const line of this.lines) {
      for (const v of data?.[line.key] ?? []) {
        if (v === null || v === undefined) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    const left = 56;
    const right = 8;
    const top = 8;
    const bottom = 20;
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = color('--muted');
    ctx.strokeStyle = color('--grid');
    ctx.lineWidth = 1;
    if (!x.length || lo === Infinity) {
      ctx.fillText('no data yet', left, height / 2);
      this.canvas.setAttribute('aria-label', 'no data yet');
      return;
    }
    if (hi === lo) {
      hi += Math.abs(hi) * 0.1 || 1;
      lo -= Math.abs(lo) * 0.1 || 0;
    }
    const pad = (hi - lo) * 0.08;
    hi += pad;
    lo = Math.max(lo >= 0 ? 0 : lo - pad, lo - pad);
    const x0 = x[0];
    const x1 = x[x.length - 1] > x0 ? x[x.length - 1] : x0 + 1;
    const px = (v) => left + ((v - x0) / (x1 - x0)) * (width - left - right);
    const py = (v) => top + (1 - (v - lo) / (hi - lo)) * (height - top - bottom);
    // grid and y labels
    for (let i = 0; i <= 3; i++) {
      const v = lo + ((hi - lo) * i) / 3;
      const y = py(v);
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(width - right, y);
      ctx.stroke();
      ctx.fillText(this.format(v), 2, y + 4);
    }
    // x labels: first and last time
    // Over half a day the labels carry the date too (UTC, like every time on the page).
    const long = x1 - x0 > 12 * 3600;
    const hhmm = (s) => new Date(s * 1000).toISOString().slice(long ? 5 : 11, 16).replace('T', ' ');
    ctx.fillText(hhmm(x0), left, height - 4);
    const last = hhmm(x1);
    ctx.fillText(last, width - right - ctx.measureText(last).width, height - 4);
    // lines (a point every pixel at most: thin long series on the fly)
    const step = Math.max(1, Math.floor(x.length / Math.max(1, width - left - right)));
    for (const line of this.lines) {
      const ys = data[line.key] ?? [];
      ctx.strokeStyle = color(line.colorVar);
      ctx.lineWidth = line.width ?? 1.5;
      ctx.setLineDash(line.dash ?? []);
      ctx.beginPath();
      let open = false;
      for (let k = 0; k < x.length; k += step) {
        // the last point always, whatever the step
        const i = k + step >= x.length ? x.length - 1 : k;
        const v = ys[i];
        if (v === null || v === undefined) {
          open = false;
        } else if (open) {
          ctx.lineTo(px(x[i]), py(v));
        } else {
          ctx.moveTo(px(x[i]), py(v));
          open = true;
        }
        if (i === x.length - 1) break;
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
    const summary = this.lines
      .map((l) => {
        const ys = data[l.key] ?? [];
        const v = ys[ys.length - 1];
        return `${l.label} ${v === null || v === undefined ? 'none' : this.format(v)}`;
      })
      .join(', ');
    this.canvas.setAttribute('aria-label', `latest: ${summary}`);
    stats.draws += 1;
    stats.drawMs += performance.now() - t0;
  }
}
