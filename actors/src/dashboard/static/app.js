// Switchboard live dashboard: loads the state from the REST API, then follows the event stream
// (GET /api/v1/events?since=SEQ, a WebSocket of {"seq","at","type","data"} frames), resuming
// from its last sequence number after a reconnect. While the stream is unavailable it polls the
// REST API every 2 s. No build step, no dependencies.
'use strict';

const POLL_MS = 2000;
const CHART_SPAN_MS = 5 * 60 * 1000;
const $ = (id) => document.getElementById(id);

const st = {
  token: localStorage.getItem('switchboard.token') || '',
  lastSeq: Number(localStorage.getItem('switchboard.lastSeq') || 0) || 0,
  queues: [], agents: [], interactions: [], queueMetrics: {},
  callsActive: null, callsStarted: null, cpsSamples: [], concurrentSamples: [],
  ws: null, wsUp: false, wsRetryMs: 1000, pollTimer: null, refreshTimer: null,
};

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (st.token) h['Authorization'] = 'Bearer ' + st.token;
  return h;
}

async function api(method, path, body) {
  const init = { method, headers: headers(body ? { 'Content-Type': 'application/json' } : {}) };
  if (body) init.body = JSON.stringify(body);
  const r = await fetch(path, init);
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!r.ok) {
    const why = json && json.error ? json.error + (json.field ? ' (' + json.field + ')' : '') : r.status + ' ' + r.statusText;
    throw new Error(method + ' ' + path + ': ' + why);
  }
  return json;
}

function showError(e) {
  const el = $('error');
  if (!e) { el.hidden = true; el.textContent = ''; return; }
  el.hidden = false;
  el.textContent = String(e.message || e);
}

// ---- state loading ----

async function loadState() {
  try {
    const since = Date.now() - 24 * 3600 * 1000;
    const [queues, agents, interactions, metrics] = await Promise.all([
      api('GET', '/api/v1/queues'),
      api('GET', '/api/v1/agents'),
      api('GET', '/api/v1/interactions'),
      api('GET', '/api/v1/metrics/queues?from_ms=' + since).catch(() => []),
    ]);
    st.queues = queues || [];
    st.agents = agents || [];
    st.interactions = interactions || [];
    st.queueMetrics = {};
    for (const m of metrics || []) st.queueMetrics[m.queue] = m;
    showError(null);
  } catch (e) {
    showError(e);
  }
  await sampleCalls();
  render();
}

// Active calls and calls per second from the Prometheus text on /metrics.
async function sampleCalls() {
  let text;
  try {
    const r = await fetch('/metrics', { headers: headers() });
    if (!r.ok) return;
    text = await r.text();
  } catch (_) { return; }
  let active = 0, ended = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = line.match(/^([a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$/);
    if (!m) continue;
    if (m[1] === 'calls_active') active = Number(m[3]);
    if (m[1] === 'calls_ended_total') ended += Number(m[3]);
  }
  const now = Date.now();
  const started = active + ended;
  if (st.callsStarted !== null && st.lastSampleAt) {
    const dt = (now - st.lastSampleAt) / 1000;
    if (dt > 0) {
      st.cps = Math.max(0, started - st.callsStarted) / dt;
      st.cpsSamples.push([now, st.cps]);
    }
  }
  st.callsActive = active;
  st.callsStarted = started;
  st.lastSampleAt = now;
  st.concurrentSamples.push([now, active]);
  const cut = now - CHART_SPAN_MS;
  st.cpsSamples = st.cpsSamples.filter((p) => p[0] >= cut);
  st.concurrentSamples = st.concurrentSamples.filter((p) => p[0] >= cut);
}

// A refresh soon, at most one in flight, after events.
function refreshSoon() {
  if (st.refreshTimer) return;
  st.refreshTimer = setTimeout(async () => {
    await loadState();
    st.refreshTimer = null;
  }, 300);
}

// ---- event stream ----

function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  let url = proto + '//' + location.host + '/api/v1/events?since=' + st.lastSeq;
  if (st.token) url += '&token=' + encodeURIComponent(st.token);
  let ws;
  try { ws = new WebSocket(url); } catch (_) { scheduleReconnect(); return; }
  st.ws = ws;
  ws.onopen = () => {
    st.wsUp = true;
    st.wsRetryMs = 1000;
    stopPolling();
    setMode('live', 'live: event stream');
    refreshSoon();
  };
  ws.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (_) { return; }
    if (typeof ev.seq === 'number') {
      st.lastSeq = ev.seq;
      localStorage.setItem('switchboard.lastSeq', String(ev.seq));
      $('last-seq').textContent = ev.seq + ' (' + ev.type + ')';
    }
    applyEvent(ev);
  };
  ws.onclose = () => {
    const was = st.wsUp;
    st.wsUp = false;
    st.ws = null;
    startPolling();
    if (was) setMode('polling', 'polling every 2 s (stream lost, reconnecting)');
    scheduleReconnect();
  };
  ws.onerror = () => { /* onclose follows */ };
}

function scheduleReconnect() {
  setTimeout(connect, st.wsRetryMs);
  st.wsRetryMs = Math.min(st.wsRetryMs * 2, 15000);
}

// Updates what an event changes right away, then reloads the figures it affects.
function applyEvent(ev) {
  const d = ev.data || {};
  if (ev.type === 'agent.state_changed') {
    const a = st.agents.find((x) => x.config && x.config.name === (d.agent || d.name));
    if (a && d.status !== undefined) a.status = d.status;
    else if (a && d.state !== undefined) a.status = d.state;
    render();
  }
  if (ev.type && (ev.type.startsWith('call.') || ev.type.startsWith('interaction.') || ev.type.startsWith('agent.'))) {
    refreshSoon();
  }
}

function startPolling() {
  if (st.pollTimer) return;
  setMode('polling', 'polling every 2 s (no event stream)');
  st.pollTimer = setInterval(loadState, POLL_MS);
}

function stopPolling() {
  if (st.pollTimer) clearInterval(st.pollTimer);
  st.pollTimer = null;
}

function setMode(cls, text) {
  const el = $('mode');
  el.className = 'pill ' + cls;
  el.textContent = text;
}

// ---- rendering ----

const fmtMs = (ms) => (ms === null || ms === undefined) ? '–' : ms < 1000 ? Math.round(ms) + ' ms' : (ms / 1000).toFixed(1) + ' s';
const fmtPct = (r) => (r === null || r === undefined) ? '–' : (r * 100).toFixed(1) + ' %';
function statusName(s) {
  if (!s) return 'unknown';
  if (typeof s === 'string') return s;
  if (s.break) return 'break';
  return Object.keys(s)[0] || 'unknown';
}
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k === null || k === undefined ? '' : String(k)));
  return e;
}

function render() {
  const slSecsDefault = 20;
  const target = Number($('sl-target').value || 80) / 100;
  const alerts = [];
  let waiting = 0;
  const qbody = $('queues').tBodies[0];
  qbody.replaceChildren();
  for (const q of st.queues) {
    const name = q.config ? q.config.name : '?';
    const live = q.live || {};
    const m = st.queueMetrics[name] || {};
    const slSecs = m.service_level_secs || slSecsDefault;
    waiting += live.waiting || 0;
    const oldest = live.oldest_wait_ms;
    const breachWait = oldest !== null && oldest !== undefined && oldest > slSecs * 1000;
    const breachSl = m.service_level !== null && m.service_level !== undefined && m.service_level < target;
    if (breachWait) alerts.push(name + ': a contact has waited ' + fmtMs(oldest) + ', over the ' + slSecs + ' s service-level threshold');
    if (breachSl) alerts.push(name + ': service level ' + fmtPct(m.service_level) + ' is below the ' + Math.round(target * 100) + ' % target');
    qbody.append(el('tr', { 'data-queue': name, class: (breachWait || breachSl) ? 'breach' : '' },
      el('td', {}, name), el('td', { class: 'waiting' }, live.waiting ?? 0), el('td', {}, fmtMs(oldest)),
      el('td', {}, live.offered ?? 0), el('td', {}, (live.agents_available ?? 0) + ' / ' + (live.agents_staffed ?? 0)),
      el('td', {}, fmtPct(m.service_level)), el('td', {}, fmtMs(m.average_speed_of_answer_ms)), el('td', {}, fmtPct(m.abandon_rate))));
  }
  $('waiting-total').textContent = waiting;
  $('alerts').replaceChildren(...alerts.map((a) => el('div', {}, a)));

  const counts = { available: 0, contact: 0, break: 0, offline: 0 };
  const abody = $('agents').tBodies[0];
  abody.replaceChildren();
  for (const a of st.agents) {
    const name = a.config ? a.config.name : '?';
    const s = statusName(a.status);
    if (s === 'available') counts.available++;
    else if (s === 'break') counts.break++;
    else if (s === 'offline') counts.offline++;
    else counts.contact++;
    const select = el('select', { class: 'force-state', 'aria-label': 'state for ' + name },
      el('option', { value: 'available' }, 'available'), el('option', { value: 'break' }, 'break'), el('option', { value: 'offline' }, 'offline'));
    const work = (a.work || []).map((w) => '#' + w.interaction + ' ' + w.channel + ' ' + w.phase).join(', ');
    abody.append(el('tr', { 'data-agent': name },
      el('td', {}, name),
      el('td', { class: 'status status-' + s }, s + (a.status && a.status.break ? ' (' + a.status.break.reason + ')' : '')),
      el('td', {}, work), el('td', {}, a.handled ?? 0),
      el('td', {}, select, ' ', el('button', { type: 'button', class: 'force', onclick: () => forceState(name, select.value) }, 'Set'))));
  }
  $('agents-by-state').textContent = counts.available + ' / ' + counts.contact + ' / ' + counts.break + ' / ' + counts.offline;

  const queueNames = st.queues.map((q) => q.config && q.config.name).filter(Boolean);
  const ibody = $('interactions').tBodies[0];
  ibody.replaceChildren();
  let chats = 0;
  for (const i of st.interactions) {
    if (i.channel === 'chat') chats++;
    const to = el('select', { class: 'move-to' }, ...queueNames.map((n) => el('option', { value: n }, n)));
    const sup = el('span', {}, ...['listen', 'whisper', 'barge'].map((mode) =>
      el('button', { type: 'button', onclick: () => supervise(i.id, mode) }, mode[0].toUpperCase() + mode.slice(1))));
    ibody.append(el('tr', { 'data-interaction': i.id },
      el('td', {}, i.id), el('td', {}, i.channel), el('td', {}, i.queue ?? ''), el('td', {}, i.state ?? ''),
      el('td', {}, i.agent ?? ''), el('td', {}, fmtMs(i.age_ms)),
      el('td', {}, to, ' ', el('button', { type: 'button', onclick: () => move(i.id, to.value) }, 'Move')),
      el('td', {}, i.channel === 'voice' ? sup : '')));
  }
  $('active-chats').textContent = chats;
  $('active-calls').textContent = st.callsActive ?? '–';
  $('cps').textContent = st.cps === undefined ? '–' : st.cps.toFixed(1);
  $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  drawChart($('chart-cps'), st.cpsSamples, '#1f77b4');
  drawChart($('chart-concurrent'), st.concurrentSamples, '#2ca02c');
}

// A small line chart of [time ms, value] points over the last CHART_SPAN_MS.
function drawChart(canvas, pts, color) {
  const g = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height, left = 36, bottom = 16;
  g.clearRect(0, 0, w, h);
  const now = Date.now();
  const max = Math.max(1, ...pts.map((p) => p[1])) * 1.1;
  g.strokeStyle = '#dde1e6';
  g.fillStyle = '#6b7280';
  g.font = '11px sans-serif';
  for (let i = 0; i <= 4; i++) {
    const y = (h - bottom) * (1 - i / 4);
    g.beginPath(); g.moveTo(left, y); g.lineTo(w, y); g.stroke();
    g.fillText((max * i / 4).toFixed(max < 10 ? 1 : 0), 2, Math.max(10, y));
  }
  g.fillText('-5 min', left, h - 3);
  g.fillText('now', w - 24, h - 3);
  if (pts.length === 0) return;
  g.strokeStyle = color;
  g.lineWidth = 2;
  g.beginPath();
  pts.forEach((p, i) => {
    const x = left + (w - left) * (1 - (now - p[0]) / CHART_SPAN_MS);
    const y = (h - bottom) * (1 - p[1] / max);
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
}

// ---- supervisor actions ----

async function forceState(agent, state) {
  try {
    await api('PUT', '/api/v1/agents/' + encodeURIComponent(agent) + '/state', { state });
    showError(null);
  } catch (e) { showError(e); }
  refreshSoon();
}

async function move(id, queue) {
  try {
    await api('POST', '/api/v1/interactions/' + id + '/move', { queue });
    showError(null);
  } catch (e) { showError(e); }
  refreshSoon();
}

async function supervise(id, mode) {
  try {
    await api('PUT', '/api/v1/interactions/' + id + '/supervision', { mode });
    showError(null);
  } catch (e) { showError(e); }
}

// ---- reports ----

async function download(format) {
  const kind = $('report-kind').value, period = $('report-period').value;
  try {
    const r = await fetch('/api/v1/reports/' + kind + '?period=' + period + '&format=' + format, { headers: headers() });
    if (!r.ok) throw new Error('report: ' + r.status);
    const blob = await r.blob();
    const a = el('a', { href: URL.createObjectURL(blob), download: kind + '-' + period + '.' + format });
    document.body.append(a); a.click(); a.remove();
  } catch (e) { showError(e); }
}

async function loadFiles() {
  try {
    const idx = await api('GET', '/api/v1/reports');
    $('report-files').replaceChildren(...(idx.files || []).map((f) =>
      el('li', {}, el('a', { href: '#', onclick: (e) => { e.preventDefault(); openFile(f.name); } }, f.name), ' ' + f.bytes + ' bytes')));
  } catch (_) { /* reports need the contact centre */ }
}

async function openFile(name) {
  const r = await fetch('/api/v1/reports/files/' + encodeURIComponent(name), { headers: headers() });
  if (!r.ok) { showError(new Error(name + ': ' + r.status)); return; }
  const a = el('a', { href: URL.createObjectURL(await r.blob()), download: name });
  document.body.append(a); a.click(); a.remove();
}

// ---- start ----

$('token').value = st.token;
$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  st.token = $('token').value.trim();
  localStorage.setItem('switchboard.token', st.token);
  if (st.ws) st.ws.close();
  loadState();
  loadFiles();
});
$('sl-target').addEventListener('change', render);
$('report-csv').addEventListener('click', () => download('csv'));
$('report-svg').addEventListener('click', () => download('svg'));
setInterval(async () => { if (st.wsUp) { await sampleCalls(); render(); } }, POLL_MS);
loadState().then(() => { startPolling(); connect(); loadFiles(); });
