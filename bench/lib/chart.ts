// A dependency-free SVG chart of latency by percentile, one line per target, in the HdrHistogram style: the x
// axis spreads the tail ("nines": p50, p90, p99, p99.9 equally spaced), the y axis is latency on a log scale,
// so the median and the tail are both readable.

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea"];
const MAX_NINES = 3; // up to p99.9

export function latencyChart(series: Record<string, number[]>, width = 720, height = 380): string {
  const pad = { l: 64, r: 20, t: 36, b: 48 };
  const all = Object.values(series)
    .flat()
    .filter((v) => v > 0);
  const min = Math.max(0.1, Math.min(...all) * 0.8);
  const max = Math.max(...all, min * 10) * 1.2;
  const nines = (q: number) => Math.min(MAX_NINES, -Math.log10(Math.max(1 - q, 10 ** -MAX_NINES)));
  const lx = (q: number) => pad.l + (nines(q) / MAX_NINES) * (width - pad.l - pad.r);
  const ly = (v: number) =>
    height -
    pad.b -
    ((Math.log10(Math.max(v, min)) - Math.log10(min)) / (Math.log10(max) - Math.log10(min))) * (height - pad.t - pad.b);
  const grid: string[] = [];
  for (const [q, label] of [
    [0, "p0"],
    [0.5, "p50"],
    [0.9, "p90"],
    [0.99, "p99"],
    [0.999, "p99.9"],
  ] as const) {
    grid.push(
      `<line x1="${lx(q)}" x2="${lx(q)}" y1="${pad.t}" y2="${height - pad.b}" stroke="#e5e7eb"/><text x="${lx(q)}" y="${height - pad.b + 16}" font-size="11" text-anchor="middle">${label}</text>`,
    );
  }
  for (let d = Math.ceil(Math.log10(min)); d <= Math.floor(Math.log10(max)); d++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** d;
      if (v < min || v > max) continue;
      grid.push(
        `<line x1="${pad.l}" x2="${width - pad.r}" y1="${ly(v)}" y2="${ly(v)}" stroke="#e5e7eb"/><text x="${pad.l - 6}" y="${ly(v) + 4}" font-size="11" text-anchor="end">${v} ms</text>`,
      );
    }
  }
  const lines = Object.entries(series).map(([name, values], k) => {
    const s = [...values].sort((a, b) => a - b);
    const pts = s.map((v, i) => `${lx(i / s.length).toFixed(1)},${ly(v).toFixed(1)}`).join(" ");
    const color = COLORS[k % COLORS.length];
    return `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts}"/><rect x="${pad.l + 12}" y="${pad.t + 8 + 18 * k}" width="14" height="3" fill="${color}"/><text x="${pad.l + 32}" y="${pad.t + 14 + 18 * k}" fill="${color}" font-size="13">${name}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${pad.l}" y="20" font-size="14">Send-to-delivery latency by percentile (log scale)</text>
${grid.join("\n")}
<line x1="${pad.l}" x2="${pad.l}" y1="${pad.t}" y2="${height - pad.b}" stroke="#111"/>
<line x1="${pad.l}" x2="${width - pad.r}" y1="${height - pad.b}" y2="${height - pad.b}" stroke="#111"/>
<text x="${(pad.l + width - pad.r) / 2}" y="${height - 10}" font-size="12" text-anchor="middle">percentile</text>
${lines.join("\n")}
</svg>
`;
}
