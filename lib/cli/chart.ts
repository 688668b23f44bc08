// Charts as standalone SVG: curves per panel (loss per step on a log scale, validation scores per
// epoch on a linear one) and grouped bars (scores before and after). d3's scales and line
// generator compute the geometry, this file lays out axes, grid and legend.
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

interface Axes {
  yLabel: string;
  xLabel: string;
  /** A log y axis (values must be > 0), else linear. */
  log: boolean;
  /** The x of the first value (1 for steps, 0 for epochs that start with the untrained model). */
  first: number;
}

const MARGIN = { top: 36, right: 16, bottom: 44, left: 64 };

/** A panel's title and its horizontal grid lines with their labels, at y's ticks. */
function titleAndGrid(
  title: string,
  x0: number,
  width: number,
  y: { ticks(n: number): number[]; tickFormat(n: number, f: string): (t: number) => string; (t: number): number | undefined },
  format: string,
): string[] {
  const parts = [`<text x="${x0 + width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${escape(title)}</text>`];
  for (const t of y.ticks(5)) {
    const yy = (y(t) ?? 0).toFixed(1);
    parts.push(`<line x1="${x0 + MARGIN.left}" x2="${x0 + width - MARGIN.right}" y1="${yy}" y2="${yy}" stroke="#e5e5e5"/>`);
    parts.push(
      `<text x="${x0 + MARGIN.left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle" font-size="10">${y.tickFormat(5, format)(t)}</text>`,
    );
  }
  return parts;
}

function panelSvg(panel: Panel, x0: number, width: number, height: number, axes: Axes): string {
  const margin = MARGIN;
  const usable = (v: number) => Number.isFinite(v) && (!axes.log || v > 0);
  const all = panel.series.flatMap((s) => s.values.filter(usable));
  const steps = Math.max(1, ...panel.series.map((s) => s.values.length));
  const lo = Math.min(...all),
    hi = Math.max(...all);
  const x = scaleLinear()
    .domain([axes.first, Math.max(axes.first + 1, axes.first + steps - 1)])
    .range([x0 + margin.left, x0 + width - margin.right]);
  const pad = (hi - lo) * 0.08 || 0.01;
  const y = (
    axes.log ? scaleLog().domain([lo > 0 ? lo * 0.9 : 1e-6, hi > 0 ? hi * 1.1 : 1]) : scaleLinear().domain([lo - pad, hi + pad])
  ).range([height - margin.bottom, margin.top]);
  const parts = titleAndGrid(panel.title, x0, width, y, axes.log ? '.1e' : '.3f');
  for (const t of x.ticks(6)) {
    const xx = x(t).toFixed(1);
    parts.push(`<line x1="${xx}" x2="${xx}" y1="${height - margin.bottom}" y2="${height - margin.bottom + 4}" stroke="#333"/>`);
    parts.push(`<text x="${xx}" y="${height - margin.bottom + 16}" text-anchor="middle" font-size="10">${t}</text>`);
  }
  parts.push(
    `<rect x="${x0 + margin.left}" y="${margin.top}" width="${width - margin.left - margin.right}" height="${height - margin.top - margin.bottom}" fill="none" stroke="#333"/>`,
  );
  parts.push(`<text x="${x0 + width / 2}" y="${height - 8}" text-anchor="middle" font-size="11">${escape(axes.xLabel)}</text>`);
  parts.push(
    `<text transform="translate(${x0 + 14},${height / 2}) rotate(-90)" text-anchor="middle" font-size="11">${escape(axes.yLabel)}</text>`,
  );
  panel.series.forEach((s, i) => {
    const points = s.values.map((v, k) => [k + axes.first, v] as [number, number]).filter(([, v]) => usable(v));
    const d = line<[number, number]>()
      .x(([k]) => x(k))
      .y(([, v]) => y(v))(points);
    if (d) parts.push(`<path d="${d}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.5"/>`);
  });
  return parts.join('\n');
}

/** Side-by-side panels of loss per training step (log scale) sharing one legend, as an SVG document. */
export function lossChart(panels: readonly Panel[], yLabel = 'training loss (log scale)'): string {
  return curvesChart(panels, { yLabel, xLabel: 'training step', log: true, first: 1 });
}

/** Side-by-side panels of curves sharing one legend, as an SVG document. */
export function curvesChart(panels: readonly Panel[], axes: Axes): string {
  const width = 460,
    height = 320;
  const body = panels.map((p, i) => panelSvg(p, i * width, width, height, axes)).join('\n');
  return document(body, width * panels.length, height, panels[0]?.series.map((s) => s.name) ?? []);
}

export interface BarGroup {
  /** The group's label under its bars (a method). */
  label: string;
  /** One value per bar name, in the order of the chart's `bars`. */
  values: readonly number[];
}

/** One panel of grouped bars per entry (e.g. a dataset), a shared legend of bar names; a linear y axis from 0. */
export function barsChart(
  panels: readonly { title: string; groups: readonly BarGroup[] }[],
  bars: readonly string[],
  yLabel: string,
): string {
  const width = 460,
    height = 320;
  const margin = MARGIN;
  const body = panels
    .map((panel, pi) => {
      const x0 = pi * width;
      const hi = Math.max(1e-9, ...panel.groups.flatMap((g) => g.values.filter(Number.isFinite)));
      const y = scaleLinear()
        .domain([0, hi * 1.1])
        .range([height - margin.bottom, margin.top]);
      const slot = (width - margin.left - margin.right) / Math.max(1, panel.groups.length);
      const barW = (slot * 0.8) / Math.max(1, bars.length);
      const parts = titleAndGrid(panel.title, x0, width, y, '.2f');
      panel.groups.forEach((g, gi) => {
        const gx = x0 + margin.left + gi * slot + slot * 0.1;
        g.values.forEach((v, bi) => {
          if (!Number.isFinite(v)) return;
          const top = y(v);
          parts.push(
            `<rect x="${(gx + bi * barW).toFixed(1)}" y="${top.toFixed(1)}" width="${(barW * 0.92).toFixed(1)}" height="${(height - margin.bottom - top).toFixed(1)}" fill="${COLORS[(bi + 1) % COLORS.length]}"/>`,
          );
        });
        parts.push(
          `<text x="${(gx + slot * 0.4).toFixed(1)}" y="${height - margin.bottom + 14}" text-anchor="middle" font-size="10">${escape(g.label)}</text>`,
        );
      });
      parts.push(
        `<rect x="${x0 + margin.left}" y="${margin.top}" width="${width - margin.left - margin.right}" height="${height - margin.top - margin.bottom}" fill="none" stroke="#333"/>`,
      );
      parts.push(
        `<text transform="translate(${x0 + 14},${height / 2}) rotate(-90)" text-anchor="middle" font-size="11">${escape(yLabel)}</text>`,
      );
      return parts.join('\n');
    })
    .join('\n');
  return document(body, width * panels.length, height, bars, 1);
}

/** The SVG document around panels: a white background and a legend row of `names` under them. */
function document(body: string, total: number, height: number, names: readonly string[], colorOffset = 0): string {
  const legendHeight = 28;
  const legend = names
    .map((n, i) => {
      const lx = 20 + (i * (total - 40)) / Math.max(1, names.length);
      return `<line x1="${lx}" x2="${lx + 22}" y1="${height + 14}" y2="${height + 14}" stroke="${COLORS[(i + colorOffset) % COLORS.length]}" stroke-width="3"/><text x="${lx + 28}" y="${height + 14}" dominant-baseline="middle" font-size="12">${escape(n)}</text>`;
    })
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${total}" height="${height + legendHeight}" viewBox="0 0 ${total} ${height + legendHeight}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${body}
${legend}
</svg>
`;
}

/** SVG documents from this file one under another, as one document. */
export function stackCharts(svgs: readonly string[]): string {
  let y = 0;
  let width = 0;
  const parts = svgs.map((svg) => {
    const w = Number(/width="(\d+)"/.exec(svg)?.[1] ?? 0);
    const h = Number(/height="(\d+)"/.exec(svg)?.[1] ?? 0);
    const part = svg.replace('<svg ', `<svg x="0" y="${y}" `);
    y += h;
    width = Math.max(width, w);
    return part;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="sans-serif">
${parts.join('')}</svg>
`;
}
