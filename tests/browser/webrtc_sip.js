// A headless Chromium (fake microphone: a beep) calls through the engine's WebRTC phone page
// (/webrtc) to a SIP number. Used by tests/tests/webrtc_sip.rs, which runs the engine and the
// SIP phone on the other side.
//
//   node webrtc_sip.js <page url> <number> [microphone wav]
//
// Protocol with the Rust test (lines):
//   out "answered <leg id>"           the far end answered and the peer is up
//   out "stats <received> <sent>"     inbound-rtp / outbound-rtp audio packet counts, once the
//                                     browser has received at least MIN_RECEIVED packets
//   in  "dtmf <digits>"               press digits (RTCDTMFSender)
//   out "dtmf-sent"
//   in  "hangup"                      hang up from the browser
//   in  "wait-bye"                    wait for the engine to end the call
//   out "ended <status> <reason>"
// Every wait is bounded (WAIT_MS); a failure prints "error ..." and exits non-zero.
'use strict';

const { chromium } = require('playwright-core');
const readline = require('readline');

const [url, number, wav] = process.argv.slice(2);
const WAIT_MS = Number(process.env.WEBRTC_WAIT_MS || 60000);
const MIN_RECEIVED = 50;

const lines = readline.createInterface({ input: process.stdin });
const pending = [];
const waiters = [];
lines.on('line', (l) => { const w = waiters.shift(); if (w) w(l.trim()); else pending.push(l.trim()); });
const nextLine = () => new Promise((resolve) => { const l = pending.shift(); if (l !== undefined) resolve(l); else waiters.push(resolve); });

async function main() {
  if (!url || !number) throw new Error('usage: node webrtc_sip.js <url> <number>');
  const profile = require('fs').mkdtempSync(require('path').join(require('os').tmpdir(), 'sb-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required']
      .concat(wav ? ['--use-file-for-fake-audio-capture=' + wav] : []),
    timeout: WAIT_MS,
  });
  try {
    const page = browser.pages()[0] || await browser.newPage();
    page.setDefaultTimeout(WAIT_MS);
    page.on('pageerror', (e) => console.log('pageerror ' + e.message));
    page.on('console', (m) => console.log('console ' + m.text()));
    await page.goto(url, { waitUntil: 'load' });
    await page.evaluate((n) => { window.phone.call(n).catch((e) => { window.phone.error = String(e); }); }, number);
    await page.waitForFunction(() => window.phone.error || window.phone.state === 'ended' ||
      (window.phone.state === 'answered' && window.phone.pc && window.phone.pc.connectionState === 'connected'));
    const st = await page.evaluate(() => ({ state: window.phone.state, error: window.phone.error, reason: window.phone.endReason, id: window.phone.id }));
    if (st.state !== 'answered') throw new Error('call not answered: ' + JSON.stringify(st) + ' log: ' + await page.textContent('#log'));
    console.log('answered ' + st.id);
    // getStats() is asynchronous, so poll it from here (waitForFunction takes a promise as truthy).
    const deadline = Date.now() + WAIT_MS;
    let s = await page.evaluate(() => window.phone.stats());
    while (s.packetsReceived < MIN_RECEIVED) {
      if (Date.now() > deadline) throw new Error('inbound audio did not arrive: ' + JSON.stringify(s));
      await new Promise((r) => setTimeout(r, 250));
      s = await page.evaluate(() => window.phone.stats());
    }
    console.log('stats ' + s.packetsReceived + ' ' + s.packetsSent);
    for (;;) {
      const cmd = await nextLine();
      if (cmd.startsWith('dtmf ')) {
        await page.evaluate((d) => window.phone.dtmf(d), cmd.slice(5));
        console.log('dtmf-sent');
      } else if (cmd === 'hangup') {
        await page.evaluate(() => window.phone.hangup());
        console.log('ended 200 hangup');
        break;
      } else if (cmd === 'wait-bye') {
        await page.waitForFunction(() => window.phone.state === 'ended');
        console.log('ended ' + await page.evaluate(() => window.phone.endReason));
        break;
      } else {
        throw new Error('unknown command ' + cmd);
      }
    }
  } finally {
    await browser.close();
  }
}

main().then(() => process.exit(0), (e) => { console.log('error ' + (e && e.stack || e)); process.exit(1); });
