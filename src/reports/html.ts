import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CLIENT_HELPERS } from './client';

/**
 * The shell of a self-contained HTML report: one file with its styles, Chart.js and its own script inlined, and its data
 * as JSON in a `<script type="application/json">` element. Nothing from the data is ever written as markup: the page's
 * script reads the JSON and renders every value with `textContent` or as a Chart.js label. A Content-Security-Policy
 * allows only the page's own inline scripts (by hash) and no network at all, so even a value that escaped its JSON
 * could neither run nor load anything.
 */

/**
 * JSON that can sit inside a `<script>` element: `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026` (so no `</script>`
 * or `<!--` can end or change the element), and U+2028/U+2029 escaped too. `JSON.parse` reads it back unchanged.
 */
export function embedJson(data: unknown): string {
  return JSON.stringify(data)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

let chartJs: string | undefined;

/** Chart.js's UMD build, read once from the installed package (its `exports` name only the CJS/ESM entries). */
export function chartJsSource(): string {
  if (chartJs === undefined) {
    const source = readFileSync(join(dirname(require.resolve('chart.js')), 'chart.umd.min.js'), 'utf8');
    // Inlined as a script element's text: it must not end the element early.
    if (/<\/script/i.test(source)) throw new Error('chart.umd.min.js contains "</script": it cannot be inlined');
    chartJs = source;
  }
  return chartJs;
}

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

export interface ReportPage {
  /** The page's first title, a fixed text (escaped all the same); its script sets the title with the data's names. */
  title: string;
  /** Serialized with {@link embedJson} into `<script type="application/json" id="report-data">`. */
  data: unknown;
  /** The page's own script (it reads the data and renders it); runs after Chart.js and the shared helpers. */
  script: string;
  /** Leave Chart.js out (tests that prove a broken page is caught). */
  withoutChartJs?: boolean;
}

/** The whole HTML document of a report. */
export function reportHtml(page: ReportPage): string {
  const scripts = [...(page.withoutChartJs ? [] : [chartJsSource()]), `${CLIENT_HELPERS}\n${page.script}`];
  const csp = [
    "default-src 'none'",
    `script-src ${scripts.map(sha256).join(' ')}`,
    "style-src 'unsafe-inline'",
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${csp}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${page.title.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`)}</title>`,
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
    '<main id="report"></main>',
    `<script type="application/json" id="report-data">${embedJson(page.data)}</script>`,
    ...scripts.map((s) => `<script>${s}</script>`),
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

const STYLE = `
:root { --pass: #2e7d32; --fail: #c62828; --warn: #ef6c00; --muted: #6b7280; --line: #e5e7eb; --ref: #6b8fd6; --cur: #f2994a; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111827; background: #f9fafb; }
main { max-width: 1160px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; }
h3 { font-size: 15px; margin: 0; overflow-wrap: anywhere; }
.sub { color: var(--muted); margin: 0 0 16px; overflow-wrap: anywhere; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; margin: 0 0 14px; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 8px 16px; margin: 0; }
.facts div { min-width: 0; }
.facts dt { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.facts dd { margin: 0; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; color: #fff; background: var(--muted); vertical-align: middle; }
.badge.pass { background: var(--pass); } .badge.fail { background: var(--fail); } .badge.warn { background: var(--warn); }
.verdict { font-size: 16px; font-weight: 600; margin: 10px 0 0; }
.feature-head { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; margin-bottom: 8px; }
.feature-body { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 16px; }
.chart { position: relative; height: 220px; }
.chart.small { height: 180px; }
.chart.wide { height: 260px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
ul.problems { margin: 6px 0 0; padding-left: 18px; }
ul.problems li { overflow-wrap: anywhere; }
.events td:nth-child(-n+3) { white-space: nowrap; overflow-wrap: normal; }
.note { color: var(--muted); font-size: 12px; margin: 6px 0 0; }
.checks { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 14px; }
.legend span { margin-right: 12px; font-size: 12px; color: var(--muted); }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 4px; vertical-align: -1px; }
@media (max-width: 800px) { .feature-body { grid-template-columns: 1fr; } }
`;
