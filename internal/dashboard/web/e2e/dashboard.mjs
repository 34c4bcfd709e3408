// Drives the dashboard in Debian's Chromium with playwright-core, as
// test/e2e/dashboard's Go test asks:
//
//   node dashboard.mjs --url URL --expect graph|split --out DIR [--timeout 90]
//
// "graph" waits until the graph has traffic on the edges front-tomcat-v1 ->
// bill-service -> bill-service-v1 and -v2. "split" opens bill-service and
// waits until the measured split is ~90/10 (84-96) next to the configured 90/10,
// then saves screenshots in both themes. "findings" opens canary and waits
// for a validation finding about a subset no DestinationRule defines;
// "errors" for its recent errors to show canary-v1's 503s with a reason. The last line of output is a JSON
// summary; the exit code is 0 only when the expectation was met.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function arg(name, def) {
  const i = process.argv.indexOf('--' + name);
  return i > 0 ? process.argv[i + 1] : def;
}
const url = arg('url');
const expect = arg('expect', 'graph');
const out = arg('out', tmpdir());
const timeout = Number(arg('timeout', '90')) * 1000;
if (!url) {
  console.error('usage: node dashboard.mjs --url URL --expect graph|split --out DIR');
  process.exit(2);
}
mkdirSync(out, { recursive: true });

const profile = mkdtempSync(join(tmpdir(), 'trellis-chromium-'));
// A fresh profile each run (Playwright passes it as --user-data-dir).
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1440, height: 860 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let code = 1;
const summary = { expect };
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  const svc = 'service/bill-service.istio-demo.svc.cluster.local';
  const wl = (n) => `workload/istio-demo/${n}`;
  const want = [[wl('front-tomcat-v1'), svc], [svc, wl('bill-service-v1')], [svc, wl('bill-service-v2')]];

  // The graph: Cytoscape's own elements, not just the API's JSON.
  await page.waitForFunction((want) => {
    const cy = window.trellisDashboard?.cy;
    if (!cy) return false;
    return want.every(([s, t]) => cy.edges().some((e) => e.data('source') === s && e.data('target') === t && e.data('rps') > 0));
  }, want, { timeout, polling: 500 });
  summary.edges = await page.evaluate(() => window.trellisDashboard.cy.edges()
    .filter((e) => e.data('rps') > 0)
    .map((e) => ({ source: e.data('source'), target: e.data('target'), rps: e.data('rps'), errorRate: e.data('errorRate'), p99: e.data('p99'), label: e.data('label') })));
  summary.nodes = await page.evaluate(() => window.trellisDashboard.cy.nodes().map((n) => n.id()));

  if (expect === 'split') {
    await page.click('#services-table tr[data-name="bill-service"]');
    await page.waitForSelector('#split-configured .split-row[data-subset="v1"]', { timeout });
    summary.configured = await page.$$eval('#split-configured .split-row', (rows) => rows.map((r) => [r.dataset.subset, Number(r.dataset.weight)]));
    await page.waitForFunction(() => {
      const v1 = document.querySelector('#split-measured .split-row[data-subset="v1"]');
      const v2 = document.querySelector('#split-measured .split-row[data-subset="v2"]');
      if (!v1 || !v2) return false;
      const w1 = Number(v1.dataset.weight);
      return w1 >= 84 && w1 <= 96; // 90 ± 6: a 30 s window of a few hundred calls
    }, null, { timeout, polling: 1000 });
    summary.measured = await page.$$eval('#split-measured .split-row', (rows) => rows.map((r) => [r.dataset.subset, Number(r.dataset.weight)]));
    summary.proxies = await page.$$eval('#detail tr[data-proxy]', (rows) => rows.map((r) => r.innerText.replace(/\s+/g, ' ').trim()));
    const theme = await page.evaluate(() => document.documentElement.dataset.theme);
    summary.screenshots = [];
    for (const t of [theme, theme === 'dark' ? 'light' : 'dark']) {
      if ((await page.evaluate(() => document.documentElement.dataset.theme)) !== t) await page.click('#theme-toggle');
      await page.waitForTimeout(300);
      const file = join(out, `dashboard-${t}.png`);
      await page.screenshot({ path: file });
      summary.screenshots.push(file);
    }
  } else if (expect === 'errors' || expect === 'findings') {
    await page.click('#services-table tr[data-name="canary"]');
    await page.waitForFunction((expect) => {
      if (expect === 'findings') return (document.querySelector('#findings')?.innerText || '').includes('is not defined');
      return (document.querySelector('#errors')?.innerText || '').includes('the upstream answered 503');
    }, expect, { timeout, polling: 1000 });
    summary.errors = await page.$$eval('#errors tbody tr', (rows) => rows.map((r) => r.innerText.replace(/\s+/g, ' ').trim()));
    summary.findings = await page.$$eval('#findings .finding', (rows) => rows.map((r) => r.innerText.replace(/\s+/g, ' ').trim()));
    const file = join(out, `dashboard-${expect}.png`);
    await page.screenshot({ path: file });
    summary.screenshots = [file];
  } else {
    const file = join(out, 'dashboard-graph.png');
    await page.screenshot({ path: file });
    summary.screenshots = [file];
  }
  summary.pageErrors = errors;
  code = errors.length ? 1 : 0;
} catch (e) {
  summary.error = String(e);
  // What the page showed when it failed.
  const pages = browser.pages();
  if (pages.length) await pages[pages.length - 1].screenshot({ path: join(out, `dashboard-${expect}-failed.png`) }).catch(() => {});
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(summary));
process.exit(code);
