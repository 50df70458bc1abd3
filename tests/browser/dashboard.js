// Drives the Switchboard dashboard in Debian's headless Chromium (playwright-core, no browser
// download). Used by tests/tests/dashboard_browser.rs, which runs the engine and the calls.
//
//   node dashboard.js <dashboard url> <screenshot path> <agent>
//
// Protocol with the Rust test, one line each way:
//   out "ready"                      the page has loaded its state
//   out "rose <calls> <waiting>"     the page shows active calls and waiting contacts
//   in  "end"                        the test ends its calls and contacts
//   out "fell"                       the page shows both back at 0
//   out "forced <agent> <state>"     the page's force-state action went through
//   out "screenshot <path>"
// Every wait is bounded (WAIT_MS); a failure prints "error ..." and exits non-zero.
'use strict';

const { chromium } = require('playwright-core');
const readline = require('readline');

const [url, shot, agent] = process.argv.slice(2);
const WAIT_MS = Number(process.env.DASHBOARD_WAIT_MS || 60000);

const lines = readline.createInterface({ input: process.stdin });
const pending = [];
const waiters = [];
lines.on('line', (l) => { const w = waiters.shift(); if (w) w(l.trim()); else pending.push(l.trim()); });
const nextLine = () => new Promise((resolve) => { const l = pending.shift(); if (l !== undefined) resolve(l); else waiters.push(resolve); });

async function main() {
  if (!url || !shot || !agent) throw new Error('usage: node dashboard.js <url> <screenshot> <agent>');
  const profile = require('fs').mkdtempSync(require('path').join(require('os').tmpdir(), 'sb-chromium-'));
  // A fresh profile directory (playwright passes it as --user-data-dir).
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 1000 },
    timeout: WAIT_MS,
  });
  try {
    const page = browser.pages()[0] || await browser.newPage();
    page.setDefaultTimeout(WAIT_MS);
    page.on('pageerror', (e) => console.log('pageerror ' + e.message));
    await page.goto(url, { waitUntil: 'load' });
    // Loaded: the agents table has its rows and the mode pill says how it follows updates.
    await page.waitForSelector('#agents tr[data-agent="' + agent + '"]');
    await page.waitForFunction(() => document.getElementById('mode').textContent !== 'loading');
    console.log('ready ' + (await page.textContent('#mode')));

    // Counters rise: at least one active call and one waiting contact.
    await page.waitForFunction(() => {
      const n = (id) => Number(document.getElementById(id).textContent);
      return n('active-calls') >= 1 && n('waiting-total') >= 1;
    });
    const calls = await page.textContent('#active-calls');
    const waiting = await page.textContent('#waiting-total');
    console.log('rose ' + calls + ' ' + waiting);
    await page.screenshot({ path: shot.replace(/\.png$/, '-busy.png'), fullPage: true });

    if ((await nextLine()) !== 'end') throw new Error('expected "end"');
    await page.waitForFunction(() => {
      const n = (id) => Number(document.getElementById(id).textContent);
      return n('active-calls') === 0 && n('waiting-total') === 0;
    });
    console.log('fell');

    // Force the agent available from the page.
    const row = page.locator('#agents tr[data-agent="' + agent + '"]');
    await row.locator('select.force-state').selectOption('available');
    await row.locator('button.force').click();
    await page.waitForFunction((a) => {
      const r = document.querySelector('#agents tr[data-agent="' + a + '"] td.status');
      return r && r.textContent.startsWith('available');
    }, agent);
    console.log('forced ' + agent + ' available');
    await page.screenshot({ path: shot, fullPage: true });
    console.log('screenshot ' + shot);
  } finally {
    await browser.close();
    require('fs').rmSync(profile, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => { console.log('error ' + (e && e.stack || e)); process.exit(1); });
