// A dependency-free SVG chart of latency distributions: the share of messages delivered within x ms (a CDF),
// one line per target, on a log x axis so p50 and p99 both show.

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea"];

export function latencyChart(series: Record<string, number[]>, width = 720, height = 360): string {
  const pad = { l: 56, r: 16, t: 28, b: 44 };
  const all = Object.values(series).flat().filter((v) => v > 0);
  const min = Math.max(0.1, Math.min(...all));
  const max = Math.max(...all, min * 10);
  const lx = (v: number) => pad.l + ((Math.log10(Math.max(v, min)) - Math.log10(min)) / (Math.log10(max) - Math.log10(min))) * (width - pad.l - pad.r);
  const ly = (q: number) => height - pad.b - q * (height - pad.t - pad.b);
  const lines = Object.entries(series).map(([name, values], k) => {
    const s = [...values].sort((a, b) => a - b);
    const pts = s.map((v, i) => `${lx(v).toFixed(1)},${ly((i + 1) / s.length).toFixed(1)}`).join(" ");
    return `<polyline fill="none" stroke="${COLORS[k % COLORS.length]}" stroke-width="2" points="${pts}"/><text x="${width - pad.r - 150}" y="${pad.t + 16 * (k + 1)}" fill="${COLORS[k % COLORS.length]}" font-size="13">${name}</text>`;
  });
  const ticks: string[] = [];
  for (let d = Math.floor(Math.log10(min)); d <= Math.ceil(Math.log10(max)); d++) {
    const v = 10 ** d;
    if (v < min || v > max) continue;
    ticks.push(`<line x1="${lx(v)}" x2="${lx(v)}" y1="${pad.t}" y2="${height - pad.b}" stroke="#e5e7eb"/><text x="${lx(v)}" y="${height - pad.b + 16}" font-size="11" text-anchor="middle">${v} ms</text>`);
  }
  for (const q of [0.5, 0.95, 0.99]) {
    ticks.push(`<line x1="${pad.l}" x2="${width - pad.r}" y1="${ly(q)}" y2="${ly(q)}" stroke="#e5e7eb"/><text x="${pad.l - 6}" y="${ly(q) + 4}" font-size="11" text-anchor="end">p${Math.round(q * 100)}</text>`);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${pad.l}" y="18" font-size="14">Send-to-delivery latency: share of messages delivered within x (log scale)</text>
${ticks.join("\n")}
<line x1="${pad.l}" x2="${pad.l}" y1="${pad.t}" y2="${height - pad.b}" stroke="#111"/>
<line x1="${pad.l}" x2="${width - pad.r}" y1="${height - pad.b}" y2="${height - pad.b}" stroke="#111"/>
${lines.join("\n")}
</svg>
`;
}
