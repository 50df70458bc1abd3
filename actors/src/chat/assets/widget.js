/* Switchboard chat widget: <script src="https://HOST/widget.js" data-queue="web"></script>
 * Plain JavaScript, no build step. A floating chat box: start form, messages, typing,
 * delivery/read receipts, attachments, and a 1-5 rating after the chat ends. The chat survives
 * page reloads and dropped connections (resume token + last seq in sessionStorage).
 * A page that knows its customer calls Switchboard.identify({name, email, phone}) before the
 * chat starts: the chat is then linked to the CRM contact with that phone number or e-mail. */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(script ? script.src : location.href).origin;
  var cfg = {
    queue: (script && script.dataset.queue) || "",
    title: (script && script.dataset.title) || "Chat with us",
  };
  var KEY = "switchboard-chat:" + base;
  var st = JSON.parse(sessionStorage.getItem(KEY) || "null") || {};
  var ws = null, ended = false, lastSeq = st.since || 0, cid = 0, typingTimer = null;
  var seen = {};

  function save() { sessionStorage.setItem(KEY, JSON.stringify(st)); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }

  var css = "#sb-chat{position:fixed;right:16px;bottom:16px;font:14px sans-serif;z-index:99999}" +
    "#sb-open{background:#2563eb;color:#fff;border:0;border-radius:20px;padding:10px 16px;cursor:pointer}" +
    "#sb-panel{display:none;width:320px;height:440px;background:#fff;border:1px solid #ccc;border-radius:8px;" +
    "box-shadow:0 4px 16px rgba(0,0,0,.2);flex-direction:column;overflow:hidden}" +
    "#sb-head{background:#2563eb;color:#fff;padding:8px;display:flex;justify-content:space-between}" +
    "#sb-log{flex:1;overflow-y:auto;padding:8px}#sb-log .m{margin:4px 0;padding:6px 8px;border-radius:6px;max-width:85%}" +
    "#sb-log .customer{background:#dbeafe;margin-left:auto}#sb-log .agent{background:#f3f4f6}" +
    "#sb-log .system{color:#666;font-style:italic;text-align:center;max-width:100%}" +
    "#sb-log .rc{font-size:11px;color:#888}#sb-typing{height:16px;padding:0 8px;color:#666;font-size:12px}" +
    "#sb-form,#sb-start,#sb-csat{padding:8px;border-top:1px solid #eee}#sb-form{display:none}" +
    "#sb-csat{display:none;text-align:center}#sb-csat button{margin:2px;width:36px}" +
    "#sb-start input,#sb-form input[type=text]{width:95%;margin:2px 0;padding:4px}";
  document.head.appendChild(el("style", {}, css));

  var root = el("div", { id: "sb-chat" });
  var openBtn = el("button", { id: "sb-open" }, cfg.title);
  var panel = el("div", { id: "sb-panel" });
  var head = el("div", { id: "sb-head" });
  head.appendChild(el("span", { id: "sb-title" }, cfg.title));
  var endBtn = el("button", { id: "sb-end", title: "End chat" }, "End");
  head.appendChild(endBtn);
  var log = el("div", { id: "sb-log" });
  var typing = el("div", { id: "sb-typing" });
  var start = el("div", { id: "sb-start" });
  var nameIn = el("input", { id: "sb-name", placeholder: "Your name" });
  var emailIn = el("input", { id: "sb-email", placeholder: "E-mail (optional)" });
  var phoneIn = el("input", { id: "sb-phone", type: "tel", placeholder: "Phone (optional)" });
  var startBtn = el("button", { id: "sb-start-btn" }, "Start chat");
  start.appendChild(nameIn); start.appendChild(emailIn); start.appendChild(phoneIn);
  start.appendChild(startBtn);
  var ident = {};
  var form = el("div", { id: "sb-form" });
  var textIn = el("input", { id: "sb-text", type: "text", placeholder: "Type a message" });
  var fileIn = el("input", { id: "sb-file", type: "file" });
  var sendBtn = el("button", { id: "sb-send" }, "Send");
  form.appendChild(textIn); form.appendChild(fileIn); form.appendChild(sendBtn);
  var csat = el("div", { id: "sb-csat" });
  csat.appendChild(el("div", {}, "How was this chat?"));
  for (var i = 1; i <= 5; i++) {
    (function (n) {
      var b = el("button", { "data-score": n, id: "sb-csat-" + n }, String(n));
      b.onclick = function () { send({ type: "csat", score: n }); };
      csat.appendChild(b);
    })(i);
  }
  [head, log, typing, start, form, csat].forEach(function (c) { panel.appendChild(c); });
  root.appendChild(openBtn); root.appendChild(panel);

  function show() { panel.style.display = "flex"; openBtn.style.display = "none"; markRead(); }
  openBtn.onclick = show;

  function send(obj) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj)); }
  function status(t) { log.appendChild(el("div", { "class": "m system" }, t)); log.scrollTop = 1e9; }

  function render(m) {
    if (seen[m.seq]) return;
    var d = el("div", { "class": "m " + m.from, "data-seq": m.seq });
    if (m.from === "agent") d.appendChild(el("b", {}, m.author + ": "));
    d.appendChild(document.createTextNode(m.text || ""));
    if (m.attachment) {
      var url = m.attachment.external ? m.attachment.url :
        base + m.attachment.url + "?token=" + encodeURIComponent(st.token);
      var a = el("a", { href: url, target: "_blank", "class": "att" }, " 📎 " + m.attachment.name);
      d.appendChild(a);
    }
    if (m.from === "customer") d.appendChild(el("div", { "class": "rc", id: "sb-rc-" + m.seq }, "sent"));
    seen[m.seq] = d;
    log.appendChild(d);
    log.scrollTop = 1e9;
  }

  function markRead() {
    if (panel.style.display === "flex" && document.visibilityState === "visible" && st.lastAgentSeq &&
        st.lastAgentSeq > (st.readUpTo || 0)) {
      st.readUpTo = st.lastAgentSeq; save();
      send({ type: "read", seq: st.lastAgentSeq });
    }
  }
  document.addEventListener("visibilitychange", markRead);

  function onFrame(f) {
    switch (f.type) {
      case "started":
        st = { chat: f.chat, token: f.token, since: 0 }; save();
        start.style.display = "none"; form.style.display = "block";
        status("Waiting for an agent…");
        break;
      case "resumed":
        st.chat = f.chat; save();
        start.style.display = "none"; form.style.display = f.state === "ended" ? "none" : "block";
        if (f.agent) document.getElementById("sb-title").textContent = f.agent;
        break;
      case "message":
        if (f.seq > lastSeq) { lastSeq = f.seq; st.since = f.seq; save(); }
        render(f);
        if (f.from === "agent") {
          st.lastAgentSeq = f.seq; save();
          send({ type: "delivered", seq: f.seq });
          markRead();
        }
        break;
      case "ack":
        if (f.command === "message" && f.seq) {
          var pending = document.querySelector('[data-cid="' + f.cid + '"]');
          if (pending) { pending.remove(); }
          if (f.seq > lastSeq) { lastSeq = f.seq; st.since = f.seq; save(); }
          render({ seq: f.seq, from: "customer", text: f.text_echo || pendingText[f.cid] || "",
                   attachment: pendingAtt[f.cid] || null });
        }
        if (f.command === "csat") { csat.innerHTML = ""; csat.appendChild(el("div", { id: "sb-thanks" }, "Thank you!")); }
        break;
      case "agent_joined":
        document.getElementById("sb-title").textContent = f.agent;
        break;
      case "typing":
        typing.textContent = f.typing ? "Agent is typing…" : "";
        break;
      case "receipt":
        for (var s = f.seq; s > 0; s--) {
          var r = document.getElementById("sb-rc-" + s);
          if (!r) continue;
          if (r.textContent === "read" || (r.textContent === f.status)) break;
          r.textContent = f.status;
        }
        break;
      case "ended":
        ended = true; form.style.display = "none"; typing.textContent = "";
        if (!f.csat) csat.style.display = "block";
        break;
      case "error":
        status("⚠ " + f.error);
        if (f.field === "resume") { st = {}; save(); start.style.display = "block"; form.style.display = "none"; }
        break;
    }
  }

  var pendingText = {}, pendingAtt = {};
  function connect() {
    var url = base.replace(/^http/, "ws") + "/chat/ws";
    if (st.token) url += "?resume=" + encodeURIComponent(st.token) + "&since=" + (st.since || 0);
    ws = new WebSocket(url);
    ws.onmessage = function (e) { try { onFrame(JSON.parse(e.data)); } catch (x) { } };
    ws.onclose = function () { if (!ended && st.token) setTimeout(connect, 1000); };
    return ws;
  }

  startBtn.onclick = function () {
    var name = nameIn.value.trim() || (ident.name || "").trim();
    if (!name) { nameIn.focus(); return; }
    var go = function () {
      var m = { type: "start", name: name };
      var email = emailIn.value.trim() || (ident.email || "").trim();
      var phone = phoneIn.value.trim() || (ident.phone || "").trim();
      if (email) m.email = email;
      if (phone) m.phone = phone;
      if (cfg.queue) m.queue = cfg.queue;
      var vid = localStorage.getItem("switchboard-visitor") || ("v-" + Math.random().toString(36).slice(2));
      localStorage.setItem("switchboard-visitor", vid);
      m.visitor_id = vid;
      send(m);
    };
    if (ws && ws.readyState === 1) go(); else { connect().onopen = go; }
  };

  function sendMessage(text, attachment) {
    cid++;
    pendingText[cid] = text; pendingAtt[cid] = attachment || null;
    var m = { type: "message", text: text, cid: cid };
    if (attachment) m.attachment = attachment.id;
    send(m);
  }
  sendBtn.onclick = function () {
    var text = textIn.value;
    var file = fileIn.files && fileIn.files[0];
    textIn.value = "";
    if (file) {
      fileIn.value = "";
      fetch(base + "/chat/" + st.chat + "/attachments?token=" + encodeURIComponent(st.token) +
            "&name=" + encodeURIComponent(file.name),
            { method: "POST", headers: { "Content-Type": file.type || "application/octet-stream" }, body: file })
        .then(function (r) { return r.json().then(function (j) { return [r.status, j]; }); })
        .then(function (x) { if (x[0] === 201) sendMessage(text, x[1]); else status("⚠ " + x[1].error); });
    } else if (text.trim()) {
      sendMessage(text);
    }
    send({ type: "typing", typing: false });
  };
  textIn.onkeydown = function (e) {
    if (e.key === "Enter") { sendBtn.onclick(); return; }
    send({ type: "typing", typing: true });
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { send({ type: "typing", typing: false }); }, 3000);
  };
  endBtn.onclick = function () { if (!ended) send({ type: "end" }); };

  function mount() {
    document.body.appendChild(root);
    if (st.token) { show(); connect(); }
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
  function identify(o) {
    o = o || {};
    ["name", "email", "phone"].forEach(function (k) { if (o[k] != null) ident[k] = String(o[k]); });
    if (ident.name) nameIn.value = ident.name;
    if (ident.email) emailIn.value = ident.email;
    if (ident.phone) phoneIn.value = ident.phone;
  }
  var api = { open: show, identify: identify,
              state: function () { return { chat: st.chat, since: lastSeq, ended: ended }; } };
  window.Switchboard = api;
  window.SwitchboardChat = api;
})();
