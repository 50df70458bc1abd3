// Two headless Chromiums in one engine video room: agent and customer. Used by tests/tests/webrtc_video.rs, which runs the engine.
//
//   node webrtc_video.js <room page url> <room>
//
// Output lines (each step bounded by WAIT_MS; a failure prints "error ..." and exits 1):
//   "camera <agent frames> <customer frames>"   both see the other's camera (frames rising)
//   "screen-request"                            the customer's page got the agent's request
//   "screen <agent screen frames>"              after consent, the screen reaches the agent
//   "chat <text>"                               a data-channel message reached the agent
//   "done"
'use strict';

const { chromium } = require('playwright-core');

const [url, roomName] = process.argv.slice(2);
const WAIT_MS = Number(process.env.WEBRTC_WAIT_MS || 60000);

async function open(role) {
  const profile = require('fs').mkdtempSync(require('path').join(require('os').tmpdir(), 'sb-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--auto-select-desktop-capture-source=Entire screen', '--auto-accept-this-tab-capture',
      '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required'],
    timeout: WAIT_MS,
  });
  const page = browser.pages()[0] || await browser.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (e) => console.log('pageerror ' + role + ' ' + e.message));
  await page.goto(url + '?room=' + roomName + '&role=' + role, { waitUntil: 'load' });
  return { browser, page, role };
}

async function until(p, what, pred) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const s = await p.page.evaluate(() => window.room.stats());
    if (pred(s)) return s;
    if (Date.now() > deadline) {
      const ev = await p.page.evaluate(() => window.room.events.join(' | '));
      throw new Error(p.role + ': ' + what + ' did not happen: ' + JSON.stringify(s) + ' events: ' + ev);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function main() {
  if (!url || !roomName) throw new Error('usage: node webrtc_video.js <url> <room>');
  const pages = [];
  try {
    const agent = await open('agent'); pages.push(agent);
    const customer = await open('customer'); pages.push(customer);
    const a = await until(agent, 'camera frames at the agent', (s) => s.camera >= 30);
    const c = await until(customer, 'camera frames at the customer', (s) => s.camera >= 30);
    console.log('camera ' + a.camera + ' ' + c.camera);

    await agent.page.evaluate(() => window.room.requestScreen());
    await customer.page.waitForFunction(() => window.room.screenRequested === true);
    console.log('screen-request');
    const granted = await customer.page.evaluate(() => window.room.consent(true));
    if (!granted) throw new Error('screen share failed: ' + await customer.page.evaluate(() => window.room.events.join(' | ')));
    await agent.page.waitForFunction(() => window.room.screenConsent === true);
    const s = await until(agent, 'screen frames at the agent', (st) => st.screen >= 10);
    console.log('screen ' + s.screen);

    await customer.page.waitForFunction(() => window.room.dc && window.room.dc.readyState === 'open');
    await agent.page.waitForFunction(() => window.room.dc && window.room.dc.readyState === 'open');
    await customer.page.evaluate(() => window.room.say('hello agent'));
    await agent.page.waitForFunction(() => window.room.chat.length > 0);
    console.log('chat ' + await agent.page.evaluate(() => window.room.chat[0]));

    console.log('done');
  } finally {
    for (const p of pages) await p.browser.close().catch(() => {});
  }
}

main().then(() => process.exit(0), (e) => { console.log('error ' + (e && e.stack || e)); process.exit(1); });
