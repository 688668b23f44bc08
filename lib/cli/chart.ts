// Loss curves as a standalone SVG: d3's scales and line generator compute the geometry, this
// file lays out axes, grid and legend.
import { scaleLinear, scaleLog } from 'd3-scale';
import { line } from 'd3-shape';

export interface Series {
  name: string;
  /** y value per x = 1, 2, ... (non-finite values are skipped). */
  values: readonly number[];
}

export interface Panel {
  title: string;
  series: readonly Series[];
}

const COLORS = ['#1b1b1b', '#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2'];

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function panelSvg(panel: Panel, x0: number, width: number, height: number, yLabel: string): string {
  const margin = { top: 36, right: 16, bottom: 44, left: 64 };
  const all = panel.series.flatMap((s) => s.values.filter((v) => Number.isFinite(v) && v > 0));
  const steps = Math.max(1, ...panel.series.map((s) => s.values.length));
  const lo = Math.min(...all),
    hi = Math.max(...all);
  const x = scaleLinear()
    .domain([1, steps])
    .range([x0 + margin.left, x0 + width - margin.right]);
  const y = scaleLog()
    .domain([lo > 0 ? lo * 0.9 : 1e-6, hi > 0 ? hi * 1.1 : 1])
    .range([height - margin.bottom, margin.top]);
  const parts: string[] = [];
  parts.push(`<text x="${x0 + width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${escape(panel.title)}</text>`);
  for (const t of y.ticks(5)) {
    const yy = y(t).toFixed(1);
    parts.push(`<line x1="${x0 + margin.left}" x2="${x0 + width - margin.right}" y1="${yy}" y2="${yy}" stroke="#e5e5e5"/>`);
    parts.push(
      `<text x="${x0 + margin.left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle" font-size="10">${y.tickFormat(5, '.1e')(t)}</text>`,
    );
  }
  for (const t of x.ticks(6)) {
    const xx = x(t).toFixed(1);
    parts.push(`<line x1="${xx}" x2="${xx}" y1="${height - margin.bottom}" y2="${height - margin.bottom + 4}" stroke="#333"/>`);
    parts.push(`<text x="${xx}" y="${height - margin.bottom + 16}" text-anchor="middle" font-size="10">${t}</text>`);
  }
  parts.push(
    `<rect x="${x0 + margin.left}" y="${margin.top}" width="${width - margin.left - margin.right}" height="${height - margin.top - margin.bottom}" fill="none" stroke="#333"/>`,
  );
  parts.push(`<text x="${x0 + width / 2}" y="${height - 8}" text-anchor="middle" font-size="11">training step</text>`);
  parts.push(
    `<text transform="translate(${x0 + 14},${height / 2}) rotate(-90)" text-anchor="middle" font-size="11">${escape(yLabel)}</text>`,
  );
  panel.series.forEach((s, i) => {
    const points = s.values.map((v, k) => [k + 1, v] as [number, number]).filter(([, v]) => Number.isFinite(v) && v > 0);
    const d = line<[number, number]>()
      .x(([k]) => x(k))
      .y(([, v]) => y(v))(points);
    if (d) parts.push(`<path d="${d}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.5"/>`);
  });
  return parts.join('\n');
}

/** Side-by-side panels sharing one legend, as an SVG document. */
export function lossChart(panels: readonly Panel[], yLabel = 'training loss (log scale)'): string {
  const width = 460,
    height = 320,
    legendHeight = 28;
  const total = width * panels.length;
  const body = panels.map((p, i) => panelSvg(p, i * width, width, height, yLabel)).join('\n');
  const names = panels[0]?.series.map((s) => s.name) ?? [];
  const legend = names
    .map((n, i) => {
      const lx = 20 + (i * (total - 40)) / Math.max(1, names.length);
      return `<line x1="${lx}" x2="${lx + 22}" y1="${height + 14}" y2="${height + 14}" stroke="${COLORS[i % COLORS.length]}" stroke-width="3"/><text x="${lx + 28}" y="${height + 14}" dominant-baseline="middle" font-size="12">${escape(n)}</text>`;
    })
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${total}" height="${height + legendHeight}" viewBox="0 0 ${total} ${height + legendHeight}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${body}
${legend}
</svg>
`;
}
