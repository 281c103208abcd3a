/**
 * Screenshots of the Temporal Web UI as an operator sees it, taken with headless Chromium (Debian's `chromium`, which
 * scripts/setup.mjs installs when run as root; `CHROMIUM_PATH` overrides it) and checked while they are taken: the
 * model's lifecycles in the workflows list with their MlStage and MlVersion columns, and one lifecycle's page (its
 * summary and details, then its timeline with the timer and activity summaries its history holds). What the pages
 * must show is read from the same server through the UI's own HTTP API, so a check fails on what the UI renders, not
 * on a guess about the data.
 */
import { mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { own } from '../shared/own';
import { MlModel, MlStage, MlVersion } from '../shared/search-attributes';
import { Stage } from '../shared/status';
import { debianBinary } from './prometheus';

/** The workflows list's columns, by the labels the UI stores them under (a custom search attribute by its name). */
export const LIST_COLUMNS = ['Status', 'Workflow ID', MlStage.name, MlVersion.name, 'Start', 'End'] as const;

/** The stages a lifecycle ends in without its candidate in production (Temporal lists them all as Completed). */
export const NOT_PROMOTED_STAGES = [Stage.RolledBack, Stage.Rejected, Stage.Failed, Stage.RollbackStuck] as const;

/** The list query of lifecycles that did not promote: `MlStage IN ("rolled-back", …)`. */
export const NOT_PROMOTED_QUERY = `${MlStage.name} IN (${NOT_PROMOTED_STAGES.map((s) => `"${s}"`).join(',')})`;

/** The list query of one model's workflows (its lifecycles and its serving monitor). */
export const modelQuery = (model: string): string => `${MlModel.name}="${model}"`;

/** A saved view of the workflows list, as the UI's "Save as New" stores it. */
export interface SavedView {
  id: string;
  name: string;
  query: string;
}

/** The saved views an operator of `model` keeps: its workflows, and every lifecycle that did not promote. */
export function savedViews(model: string): SavedView[] {
  return [
    { id: `ml-lifecycle-${model}`, name: `${model} lifecycles`, query: modelQuery(model) },
    { id: 'ml-lifecycle-not-promoted', name: 'Not promoted', query: NOT_PROMOTED_QUERY },
  ];
}

/**
 * The localStorage entries the bundled UI (2.54) reads its list settings from: the columns per namespace
 * (`namespace-workflow-table-columns`, what "Configure Columns" writes) and the saved views per namespace
 * (`saved-workflow-queries`). Both are JSON.
 */
export function uiSettings(namespace: string, model: string): Record<string, string> {
  return {
    'namespace-workflow-table-columns': JSON.stringify({ [namespace]: LIST_COLUMNS.map((label) => ({ label })) }),
    'saved-workflow-queries': JSON.stringify({
      [namespace]: savedViews(model).map((v) => ({ ...v, type: 'user' })),
    }),
  };
}

/** Chromium: `CHROMIUM_PATH`, else `chromium` on PATH (Debian package `chromium`). */
export function chromiumBinary(): string {
  return debianBinary('chromium', 'chromium', 'CHROMIUM_PATH', process.env.CHROMIUM_PATH);
}

export interface UiScreenshotOptions {
  /** The UI's base URL, e.g. `http://localhost:8233`. */
  uiUrl: string;
  namespace: string;
  /** The folder the PNGs are written to (created if missing). */
  outDir: string;
  /** The lifecycle whose page is captured; its MlModel picks the list's filter. */
  workflowId: string;
  /** Fails unless the lifecycle's MlStage is this (e.g. `rolled-back`). */
  expectStage?: string;
  /** How long each page may take to show what it must (default 30 s). */
  timeoutMs?: number;
}

export interface UiScreenshots {
  /** The workflows list filtered to the model: `temporal-ui-list.png`. */
  list: string;
  /** The lifecycle's page, metadata above timeline: `temporal-ui-<stage>.png`. */
  lifecycle: string;
  model: string;
  stage: string;
  summary: string;
  /** How many rows the filtered list showed. */
  rows: number;
  /** Every text each page was checked to show. */
  checked: string[];
}

/** A Temporal payload as the UI's HTTP API returns it (JSON, bytes in base64). */
interface ApiPayload {
  metadata?: Record<string, string>;
  data?: string;
}

interface DescribeResponse {
  workflowExecutionInfo?: {
    execution?: { runId?: string };
    searchAttributes?: { indexedFields?: Record<string, ApiPayload> };
  };
  executionConfig?: { userMetadata?: { summary?: ApiPayload; details?: ApiPayload } };
}

interface HistoryResponse {
  history?: { events?: { eventType?: string; userMetadata?: { summary?: ApiPayload } }[] };
  nextPageToken?: string | null;
}

/** The project's payloads are `json/plain`; anything else (a codec's) cannot be checked against the page. */
function payloadValue(p: ApiPayload | undefined, what: string): unknown {
  if (!p?.data) return undefined;
  const encoding = Buffer.from(p.metadata?.encoding ?? '', 'base64').toString();
  if (encoding !== 'json/plain') throw new Error(`${what} is encoded as "${encoding}", not json/plain`);
  return JSON.parse(Buffer.from(p.data, 'base64').toString()) as unknown;
}

async function apiGet<T>(url: string, what: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(15_000) }).catch((err: unknown) => {
    const cause = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
    throw new Error(`cannot reach the Temporal UI for ${what} (${url}): ${cause}`);
  });
  if (!res.ok) throw new Error(`the UI's API answered ${res.status} for ${what} (${url})`);
  return (await res.json()) as T;
}

/** What the server holds about the lifecycle, read the way the UI reads it. */
async function lifecycleFacts(o: UiScreenshotOptions) {
  const base = `${o.uiUrl}/api/v1/namespaces/${encodeURIComponent(o.namespace)}/workflows/${encodeURIComponent(o.workflowId)}`;
  const described = await apiGet<DescribeResponse>(base, `workflow ${o.workflowId}`);
  const runId = described.workflowExecutionInfo?.execution?.runId;
  if (!runId) throw new Error(`workflow ${o.workflowId}: the UI's API returned no run id`);
  const attrs = described.workflowExecutionInfo?.searchAttributes?.indexedFields;
  const model = payloadValue(own(attrs, MlModel.name), `${o.workflowId} ${MlModel.name}`);
  const stage = payloadValue(own(attrs, MlStage.name), `${o.workflowId} ${MlStage.name}`);
  if (typeof model !== 'string' || typeof stage !== 'string')
    throw new Error(
      `workflow ${o.workflowId} has no ${MlModel.name}/${MlStage.name} search attributes: not a lifecycle`,
    );
  if (o.expectStage !== undefined && stage !== o.expectStage)
    throw new Error(`workflow ${o.workflowId} is at ${MlStage.name} "${stage}", not "${o.expectStage}"`);
  const metadata = described.executionConfig?.userMetadata;
  const summary = payloadValue(metadata?.summary, `${o.workflowId} summary`);
  const details = payloadValue(metadata?.details, `${o.workflowId} details`);
  if (typeof summary !== 'string' || summary === '')
    throw new Error(`workflow ${o.workflowId} was started without a static summary`);

  // Timer and activity summaries, as the timeline labels them.
  const eventSummaries = new Set<string>();
  let token: string | null | undefined;
  do {
    const page = await apiGet<HistoryResponse>(
      `${base}/history?execution.runId=${runId}&maximumPageSize=1000${token ? `&nextPageToken=${encodeURIComponent(token)}` : ''}`,
      `the history of ${o.workflowId}`,
    );
    for (const e of page.history?.events ?? []) {
      if (e.eventType !== 'EVENT_TYPE_TIMER_STARTED' && e.eventType !== 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED') continue;
      const s = payloadValue(e.userMetadata?.summary, `a ${e.eventType} summary`);
      if (typeof s === 'string' && s) eventSummaries.add(s);
    }
    token = page.nextPageToken;
  } while (token);
  if (eventSummaries.size === 0)
    throw new Error(`workflow ${o.workflowId}: no timer or activity in its history carries a summary`);
  return { runId, model, stage, summary, details: typeof details === 'string' ? details : '', eventSummaries };
}

/** The first line of Markdown details as the page renders it (no emphasis or code marks, no list bullet). */
function renderedFirstLine(markdown: string): string {
  const line = markdown.split('\n').find((l) => l.trim() !== '') ?? '';
  return line
    .replace(/^\s*[-*]\s+/, '')
    .replace(/[*`_]/g, '')
    .trim();
}

/** The few browser globals the in-page checks use (the project compiles without the DOM library). */
interface BrowserElement {
  innerText: string;
  getAttribute(name: string): string | null;
  setAttribute(name: string, value: string): void;
  getBoundingClientRect(): { x: number; y: number; width: number; height: number; bottom: number };
  parentElement: BrowserElement | null;
}
interface BrowserWindow {
  document: {
    body: BrowserElement | null;
    querySelector(selector: string): BrowserElement | null;
    querySelectorAll(selector: string): ArrayLike<BrowserElement>;
    fonts: { ready: Promise<unknown> };
  };
  localStorage: { setItem(key: string, value: string): void };
  location: { origin: string };
}

const ROW = '[data-testid="workflows-summary-configurable-table-row"]';
const TIMELINE_MARK = 'data-ml-lifecycle-timeline';
const header = (label: string) => `[data-testid="workflows-summary-table-header-cell-${label}"]`;

/** Throws if the page logged a console error or threw since the last call, naming them. */
function errorWatch(page: Page): (where: string) => void {
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e instanceof Error ? e.message : String(e)}`));
  return (where) => {
    if (errors.length > 0) throw new Error(`${where}: ${errors.splice(0).join('; ')}`);
  };
}

/** The text of the page and of its frames (the UI renders Markdown summaries and details in iframes). */
async function pageText(page: Page): Promise<string> {
  const texts = await Promise.all(
    page
      .frames()
      .map((f) =>
        f.evaluate(() => (globalThis as unknown as BrowserWindow).document.body?.innerText ?? '').catch(() => ''),
      ),
  );
  return texts.join('\n');
}

/** Waits until every text is on the page; on timeout, throws naming the ones that never appeared. */
async function waitForTexts(page: Page, texts: string[], where: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await pageText(page);
    const missing = texts.filter((t) => !text.includes(t));
    if (missing.length === 0) return;
    if (Date.now() > deadline)
      throw new Error(`${where} does not show ${missing.map((t) => JSON.stringify(t)).join(', ')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A region of the page (CSS pixels) from the top of `fromSelector`'s element to the bottom of `toSelector`'s. */
async function region(page: Page, fromSelector: string, toSelector: string, where: string) {
  const box = await page.evaluate(
    (from: string, to: string) => {
      const d = (globalThis as unknown as BrowserWindow).document;
      const main = d.querySelector('main');
      const a = d.querySelector(from);
      const b = d.querySelector(to);
      if (!main || !a || !b) return null;
      const m = main.getBoundingClientRect();
      const top = a.getBoundingClientRect().y;
      return { x: m.x, y: top, width: m.width, height: b.getBoundingClientRect().bottom - top };
    },
    fromSelector,
    toSelector,
  );
  if (!box || box.height <= 0) throw new Error(`${where}: the page has no ${fromSelector} … ${toSelector} region`);
  const pad = 16;
  return { x: box.x, y: Math.max(0, box.y - pad), width: box.width, height: box.height + 2 * pad };
}

/**
 * Opens the workflows list filtered to the lifecycle's model with the project's columns and saved views, then the
 * lifecycle's page, and saves both as PNGs in `outDir`. Throws, naming what was missing, when the list has no rows or
 * no row of the lifecycle at its stage, when a page lacks an expected text, or when the UI logs a console error.
 */
export async function takeUiScreenshots(options: UiScreenshotOptions): Promise<UiScreenshots> {
  const o = { ...options, uiUrl: options.uiUrl.replace(/\/+$/, '') };
  const timeoutMs = o.timeoutMs ?? 30_000;
  const facts = await lifecycleFacts(o);
  mkdirSync(o.outDir, { recursive: true });
  const nsUrl = `${o.uiUrl}/namespaces/${encodeURIComponent(o.namespace)}`;
  const checked: string[] = [];

  const browser: Browser = await puppeteer.launch({
    executablePath: chromiumBinary(),
    headless: true,
    // Root in a container: no user namespaces for the sandbox, and a small /dev/shm.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run'],
    defaultViewport: { width: 1440, height: 720 },
  });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(timeoutMs);
    const raised = errorWatch(page);
    // Before any of the UI's scripts run, so it starts with these columns and views as if an operator had set them.
    await page.evaluateOnNewDocument(
      (origin: string, settings: Record<string, string>) => {
        const w = globalThis as unknown as BrowserWindow;
        if (w.location.origin !== origin) return;
        for (const [key, value] of Object.entries(settings)) w.localStorage.setItem(key, value);
      },
      new URL(o.uiUrl).origin,
      uiSettings(o.namespace, facts.model),
    );

    // (a) The model's workflows, the lifecycle's row showing its stage.
    const listWhere = `the workflows list of ${modelQuery(facts.model)}`;
    await page.goto(`${nsUrl}/workflows?query=${encodeURIComponent(modelQuery(facts.model))}`, {
      waitUntil: 'domcontentloaded',
    });
    try {
      await page.waitForFunction(
        (row: string, id: string, stage: string) =>
          Array.from((globalThis as unknown as BrowserWindow).document.querySelectorAll(row)).some(
            (r) => r.innerText.includes(id) && r.innerText.includes(stage),
          ),
        { timeout: timeoutMs, polling: 250 },
        ROW,
        o.workflowId,
        facts.stage,
      );
    } catch {
      const rows = await page.$$eval(ROW, (rs) => rs.length);
      throw new Error(
        rows === 0
          ? `${listWhere} shows no rows`
          : `${listWhere} shows ${rows} rows but none of ${o.workflowId} at ${MlStage.name} "${facts.stage}"`,
      );
    }
    const absent: string[] = [];
    for (const label of LIST_COLUMNS) if (!(await page.$(header(label)))) absent.push(label);
    if (absent.length > 0) throw new Error(`${listWhere} has no column ${absent.join(', ')}`);
    await waitForTexts(page, [savedViews(facts.model)[0]!.name], listWhere, timeoutMs);
    checked.push(`list: columns ${LIST_COLUMNS.join(', ')}; row ${o.workflowId} at ${facts.stage}`);
    const rows = await page.$$eval(ROW, (rs) => rs.length);
    await page.evaluate(() => (globalThis as unknown as BrowserWindow).document.fonts.ready);
    raised(listWhere);
    const list = join(o.outDir, 'temporal-ui-list.png');
    await page.screenshot({ path: list });

    // (b) The lifecycle's page: summary, details and current details first, then its timeline.
    // Tall enough for the whole timeline of a lifecycle: the UI scrolls its main pane, not the document.
    await page.setViewport({ width: 1600, height: 2600 });
    const runUrl = `${nsUrl}/workflows/${encodeURIComponent(o.workflowId)}/${facts.runId}`;
    const metaWhere = `the User Metadata tab of ${o.workflowId}`;
    await page.goto(`${runUrl}/user-metadata`, { waitUntil: 'domcontentloaded' });
    const detailsLine = renderedFirstLine(facts.details);
    const metaTexts = [o.workflowId, facts.summary, ...(detailsLine ? [detailsLine] : []), facts.stage];
    await waitForTexts(page, metaTexts, metaWhere, timeoutMs);
    checked.push(`metadata: ${metaTexts.join(' | ')}`);
    await page.evaluate(() => (globalThis as unknown as BrowserWindow).document.fonts.ready);
    raised(metaWhere);
    const topClip = await region(
      page,
      '[data-testid="workflow-id-heading"]',
      '[data-testid="user-metadata"]',
      metaWhere,
    );
    const top = await page.screenshot({ clip: topClip, encoding: 'base64' });

    const timelineWhere = `the timeline of ${o.workflowId}`;
    await page.goto(`${runUrl}/timeline`, { waitUntil: 'domcontentloaded' });
    const timelineTexts = [...facts.eventSummaries];
    await waitForTexts(page, timelineTexts, timelineWhere, timeoutMs);
    checked.push(`timeline: ${timelineTexts.join(' | ')}`);
    await page.evaluate(() => (globalThis as unknown as BrowserWindow).document.fonts.ready);
    raised(timelineWhere);
    // The section has no test id: it is what holds the sticky bar of the "Timeline" heading. Marked for the clip.
    await page.evaluate((mark: string) => {
      const d = (globalThis as unknown as BrowserWindow).document;
      const heading = Array.from(d.querySelectorAll('h2')).find((h) => h.innerText.trim() === 'Timeline');
      heading?.parentElement?.parentElement?.parentElement?.setAttribute(mark, '');
    }, TIMELINE_MARK);
    const bottom = await page.screenshot({
      clip: await region(page, '[data-testid="input-and-result"]', `[${TIMELINE_MARK}]`, timelineWhere),
      encoding: 'base64',
    });

    raised(timelineWhere);

    const lifecycle = join(o.outDir, `temporal-ui-${facts.stage.replace(/[^a-z0-9-]/gi, '_')}.png`);
    const sheet = await browser.newPage();
    await sheet.setViewport({ width: Math.ceil(topClip.width), height: 400 });
    await sheet.setContent(
      '<body style="margin:0;background:#f8fafc">' +
        `<img style="display:block" src="data:image/png;base64,${top}">` +
        '<div style="height:4px;background:#cbd5e1"></div>' +
        `<img style="display:block" src="data:image/png;base64,${bottom}"></body>`,
      { waitUntil: 'load' },
    );
    await sheet.screenshot({ path: lifecycle, fullPage: true });

    for (const file of [list, lifecycle]) {
      if (statSync(file).size < 10_000) throw new Error(`${file} is suspiciously small (${statSync(file).size} bytes)`);
    }
    return { list, lifecycle, model: facts.model, stage: facts.stage, summary: facts.summary, rows, checked };
  } finally {
    await browser.close();
  }
}

async function main(): Promise<void> {
  const cli = new Command('ui-screenshots')
    .description('screenshot and check the Temporal UI: a model’s lifecycles in the list, and one lifecycle’s page')
    .requiredOption('--workflow-id <id>', 'the lifecycle whose page is captured (its model filters the list)')
    .option('--ui-url <url>', 'the Temporal UI', 'http://localhost:8233')
    .option('--namespace <ns>', 'the namespace', 'default')
    .option('--out <dir>', 'where the PNGs go', 'docs')
    .option('--expect-stage <stage>', 'fail unless the lifecycle ended at this MlStage (e.g. rolled-back)')
    .option('--timeout <ms>', 'how long each page may take to show what it must', '30000')
    .parse();
  const opts = cli.opts<{
    workflowId: string;
    uiUrl: string;
    namespace: string;
    out: string;
    expectStage?: string;
    timeout: string;
  }>();
  const timeoutMs = Number(opts.timeout);
  if (!(timeoutMs > 0)) throw new Error(`--timeout: "${opts.timeout}" is not a positive number of milliseconds`);
  const shots = await takeUiScreenshots({
    uiUrl: opts.uiUrl,
    namespace: opts.namespace,
    outDir: resolve(opts.out),
    workflowId: opts.workflowId,
    timeoutMs,
    ...(opts.expectStage ? { expectStage: opts.expectStage } : {}),
  });
  for (const c of shots.checked) process.stdout.write(`checked ${c}\n`);
  process.stdout.write(`saved ${shots.list} (${shots.rows} rows of ${modelQuery(shots.model)})\n`);
  process.stdout.write(`saved ${shots.lifecycle} (${opts.workflowId}: ${shots.stage})\n`);
}

// Only as a script: tests import this module.
if (typeof require !== 'undefined' && require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`ui-screenshots: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
