import { pathToFileURL } from 'node:url';
import puppeteer, { type Browser } from 'puppeteer-core';
import { chromiumBinary } from '../../src/dev/ui-screenshots';

/** What a report page showed in headless Chromium. */
export interface ReportPageFacts {
  /** Console errors, page errors, dialogs (an `alert` that ran) and requests that left the file. */
  problems: string[];
  canvases: number;
  /** Chart.js charts on the page (`Chart.instances`); -1 when Chart.js is not there at all. */
  charts: number;
  /** Canvases with not one painted pixel. */
  blankCanvases: number;
  /** `<img>` elements: a report has none, so one means markup from the data was interpreted. */
  images: number;
  text: string;
}

export async function launchChromium(): Promise<Browser> {
  return puppeteer.launch({
    executablePath: chromiumBinary(),
    headless: true,
    // Root in a container: no user namespaces for the sandbox, and a small /dev/shm.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run'],
    defaultViewport: { width: 1200, height: 900 },
  });
}

/** Opens a report file, waits for it to render, and reads what it shows; with `screenshot`, saves the full page. */
export async function inspectReport(browser: Browser, file: string, screenshot?: string): Promise<ReportPageFacts> {
  const page = await browser.newPage();
  const problems: string[] = [];
  const url = pathToFileURL(file).href;
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e instanceof Error ? e.message : String(e)}`));
  page.on('dialog', (d) => {
    problems.push(`dialog: ${d.message()}`);
    void d.dismiss();
  });
  page.on('request', (r) => {
    if (r.url() !== url && !r.url().startsWith('data:')) problems.push(`request: ${r.url()}`);
  });
  try {
    await page.goto(url, { waitUntil: 'load' });
    // Charts draw on the next animation frame after a resize: give them two.
    await page.evaluate(() => {
      const raf = (globalThis as unknown as { requestAnimationFrame(f: () => void): void }).requestAnimationFrame;
      return new Promise<void>((r) => raf(() => raf(r)));
    });
    const facts = await page.evaluate(() => {
      const w = globalThis as unknown as {
        document: {
          querySelectorAll(s: string): ArrayLike<unknown>;
          body: { innerText: string };
        };
        Chart?: { instances: Record<string, unknown> };
      };
      const canvases = Array.from(w.document.querySelectorAll('canvas')) as {
        width: number;
        height: number;
        getContext(kind: '2d'): {
          getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
        };
      }[];
      const blank = canvases.filter((c) => {
        if (c.width === 0 || c.height === 0) return true;
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return false;
        return true;
      }).length;
      return {
        canvases: canvases.length,
        charts: w.Chart ? Object.keys(w.Chart.instances).length : -1,
        blankCanvases: blank,
        images: w.document.querySelectorAll('img').length,
        text: w.document.body.innerText,
      };
    });
    if (screenshot) await page.screenshot({ path: screenshot as `${string}.png`, fullPage: true });
    return { problems, ...facts };
  } finally {
    await page.close();
  }
}
