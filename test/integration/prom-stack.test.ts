import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  alertmanagerAlerts,
  alertmanagerBinary,
  prometheusBinary,
  queryPrometheus,
  startAlertmanager,
  startPrometheus,
  waitForScrape,
  type AlertmanagerServer,
  type PrometheusServer,
} from '../../src/dev/prometheus';

const TOKEN = 'prom-stack-token';

/** `demo_total` as Prometheus holds it: one `{ labels, value }` per series. */
async function demoTotal(url: string, time?: Date) {
  const data = await queryPrometheus(url, 'demo_total{job="demo"}', time);
  if (data.resultType !== 'vector') throw new Error(`expected a vector, got ${data.resultType}`);
  return data.result.map(({ metric, value }) => ({ a: metric.a, value: Number(value[1]) }));
}

async function postAlert(am: AlertmanagerServer, alert: object): Promise<void> {
  const res = await request(am.alertsUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify([alert]),
  });
  expect(res.statusCode, await res.body.text()).toBe(200);
}

// The binaries come from Debian packages that setup installs as root; without them these tests fail, naming them.
describe('the real Prometheus and Alertmanager the tests run against', () => {
  let target: Server;
  let prom: PrometheusServer | undefined;
  let am: AlertmanagerServer | undefined;

  beforeAll(async () => {
    target = createServer((req, res) => {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end();
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end('# TYPE demo_total counter\ndemo_total{a="b"} 5\n');
    });
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  });

  afterAll(async () => {
    await prom?.stop();
    await am?.stop();
    await new Promise((r) => target.close(r));
  });

  it('finds both binaries (or names the Debian package to install)', () => {
    expect(prometheusBinary()).toMatch(/prometheus$/);
    expect(alertmanagerBinary()).toMatch(/alertmanager$/);
  });

  it('scrapes a target with a bearer token and answers PromQL about it', async () => {
    const { port } = target.address() as AddressInfo;
    prom = await startPrometheus({
      scrapeTargets: [{ job: 'demo', targets: [`127.0.0.1:${port}`], bearerToken: TOKEN }],
      scrapeIntervalMs: 500,
    });
    await waitForScrape(prom, 'demo', 10_000);
    expect(await demoTotal(prom.url)).toEqual([{ a: 'b', value: 5 }]);
  });

  it('is unreachable while killed and comes back on the same port with its data', async () => {
    if (!prom) throw new Error('Prometheus did not start');
    const beforeKill = new Date();
    await prom.kill();
    await expect(queryPrometheus(prom.url, 'demo_total')).rejects.toThrow(/ECONNREFUSED/);

    await prom.restart();
    // The sample scraped before the crash, from the same data dir (the WAL). No new scrape is awaited: Prometheus
    // 2.42 applies scrape targets on a fixed 5 s tick, which would double this test's time.
    expect(await demoTotal(prom.url, beforeKill)).toEqual([{ a: 'b', value: 5 }]);
    expect(await demoTotal(prom.url)).toEqual([{ a: 'b', value: 5 }]);
  });

  it('lists a posted alert as active, then drops it once it is resolved', async () => {
    am = await startAlertmanager({ resolveTimeoutMs: 60_000 });
    const labels = { alertname: 'PromStackProbe', severity: 'warning' };
    const startsAt = new Date().toISOString();
    await postAlert(am, {
      labels,
      annotations: { summary: 'probe' },
      startsAt,
      endsAt: new Date(Date.now() + 60_000).toISOString(),
    });
    await expect
      .poll(async () => (await alertmanagerAlerts(am!.url, { alertname: 'PromStackProbe' })).map((a) => a.status.state))
      .toEqual(['active']);
    const [listed] = await alertmanagerAlerts(am.alertsUrl, labels, { active: true });
    expect(listed).toMatchObject({ labels, annotations: { summary: 'probe' } });
    expect(await alertmanagerAlerts(am.url, { alertname: 'SomethingElse' })).toEqual([]);

    await postAlert(am, { labels, annotations: { summary: 'probe' }, startsAt, endsAt: new Date().toISOString() });
    await expect.poll(() => alertmanagerAlerts(am!.url, { alertname: 'PromStackProbe' })).toEqual([]);
  });
});
