// The omnichannel must-show in Debian's headless Chromium (playwright-core, no browser
// download). Used by tests/tests/omnichannel_browser.rs, which runs the engine and the earlier
// phone call from the same number.
//
//   node omnichannel.js <engine base url> <artifacts dir> <agent> <phone number>
//
// A shop page on another origin (http://127.0.0.1:OTHER_PORT/, served by this script) embeds
// the widget with one <script> tag and tells it who the customer is with
// Switchboard.identify({name, phone}); the agent page (/agent) logs in, accepts the chat, they
// talk, the agent creates a ticket from the chat, ends it, the customer rates it 5, and the
// agent page's contact timeline shows the earlier call, the chat and the ticket.
//
// Lines printed for the Rust test:
//   "chat <id>"           the widget started chat <id>
//   "ticket <id>"         the agent page created ticket <id>
//   "rated"               the widget thanked for the score
//   "timeline <n>"        the agent page shows the contact's timeline with <n> items
//   "screenshot <path>"   one per screenshot
// Every wait is bounded (WAIT_MS); a failure prints "error ..." and exits non-zero.
'use strict';

const { chromium } = require('playwright-core');
const path = require('path');
const http = require('http');

const [base, artifacts, agent, phone] = process.argv.slice(2);
const WAIT_MS = Number(process.env.OMNI_WAIT_MS || 60000);

async function shot(page, name) {
  const p = path.join(artifacts, name);
  await page.screenshot({ path: p, fullPage: true });
  console.log('screenshot ' + p);
}

async function main() {
  if (!base || !artifacts || !agent || !phone) {
    throw new Error('usage: node omnichannel.js <base url> <artifacts dir> <agent> <phone>');
  }
  let shop = null;
  const profile = require('fs').mkdtempSync(path.join(require('os').tmpdir(), 'sb-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
    timeout: WAIT_MS,
  });
  try {
    // The customer's page on another origin (a small HTTP server of this script on loopback):
    // the widget is one <script> tag.
    const shopHtml = '<!doctype html><html><head><meta charset="utf-8"><title>Example Shop</title></head>' +
      '<body><h1>Example Shop</h1><p>Order ORD-1234 is on its way.</p>' +
      '<script src="' + base + '/widget.js" data-queue="web"></script></body></html>';
    shop = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(shopHtml);
    });
    await new Promise((resolve) => shop.listen(0, '127.0.0.1', resolve));
    const SHOP = 'http://127.0.0.1:' + shop.address().port + '/';
    const customer = browser.pages()[0] || await browser.newPage();
    customer.setDefaultTimeout(WAIT_MS);
    customer.on('pageerror', (e) => console.log('pageerror customer ' + e.message));
    await customer.goto(SHOP, { waitUntil: 'load' });
    await customer.waitForFunction(() => window.Switchboard && document.getElementById('sb-open'));
    await customer.evaluate((p) => window.Switchboard.identify({ name: 'Nora Quinn', phone: p }), phone);
    await customer.click('#sb-open');
    if ((await customer.inputValue('#sb-phone')) !== phone) throw new Error('identify did not fill the phone');

    // The agent logs in on the agent page.
    const desk = await browser.newPage();
    desk.setDefaultTimeout(WAIT_MS);
    desk.on('pageerror', (e) => console.log('pageerror agent ' + e.message));
    await desk.goto(base + '/agent', { waitUntil: 'load' });
    await desk.fill('#agent-name', agent);
    await desk.click('#connect');
    await desk.waitForFunction(() => /connected as/.test(document.getElementById('status').textContent));

    // The customer starts the chat and writes.
    await customer.click('#sb-start-btn');
    await customer.waitForFunction(() => window.Switchboard.state().chat);
    const chat = await customer.evaluate(() => window.Switchboard.state().chat);
    console.log('chat ' + chat);
    await customer.fill('#sb-text', 'Hello, my parcel ORD-1234 is late');
    await customer.press('#sb-text', 'Enter');

    // The agent accepts the offer, reads and answers.
    await desk.click('.offer .accept');
    await desk.waitForSelector('#chat-' + chat + ' .m.customer');
    await desk.fill('#chat-' + chat + ' input.text', 'Sorry about that, I am opening a ticket');
    await desk.press('#chat-' + chat + ' input.text', 'Enter');
    await customer.waitForSelector('#sb-log .m.agent');

    // A ticket from the chat (the agent page's button: one API call).
    await desk.click('#chat-' + chat + ' .create-ticket');
    const t = await desk.waitForSelector('#chat-' + chat + ' .ticket');
    console.log('ticket ' + (await t.getAttribute('data-ticket')));

    // The agent ends the chat; the customer rates it.
    await desk.click('#chat-' + chat + ' .end');
    await customer.waitForSelector('#sb-csat-5', { state: 'visible' });
    await shot(customer, 'omnichannel-customer-rating.png');
    await customer.click('#sb-csat-5');
    await customer.waitForSelector('#sb-thanks');
    console.log('rated');
    await shot(customer, 'omnichannel-customer.png');

    // The contact's timeline on the agent page: the earlier call, the chat (rated) and the
    // ticket. The score is stored in the background: reload the timeline until it shows.
    const sel = '#chat-' + chat + ' .timeline';
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      await desk.click('#chat-' + chat + ' .show-timeline');
      await desk.waitForSelector(sel);
      const ok = await desk.evaluate((s) => {
        const ul = document.querySelector(s);
        const has = (q) => ul && ul.querySelector(q);
        return has('li[data-channel="voice"]') && has('li[data-channel="chat"]') &&
          has('li[data-type="ticket"]') && has('li[data-type="csat"]');
      }, sel);
      if (ok) break;
      if (Date.now() > deadline) throw new Error('timeline incomplete: ' + (await desk.textContent(sel)));
      await desk.waitForTimeout(300);
    }
    const n = await desk.$$eval(sel + ' li', (l) => l.length);
    console.log('timeline ' + n + ' ' + (await desk.textContent(sel)).replace(/\s+/g, ' '));
    await shot(desk, 'omnichannel-agent.png');
  } finally {
    await browser.close();
    if (shop) shop.close();
  }
}

main().then(() => process.exit(0), (e) => {
  console.log('error ' + (e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e));
  process.exit(1);
});
