// The engine's WebRTC phone: one call per WebSocket (/webrtc/ws), JSON signalling with
// trickled ICE; DTMF through RTCDTMFSender (telephone-event in the media).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const phone = { pc: null, ws: null, state: "idle", id: null, sender: null };
  window.phone = phone;

  function log(s) {
    const el = $("log");
    if (el) el.textContent += s + "\n";
  }
  function setState(s) {
    phone.state = s;
    if ($("state")) $("state").textContent = s;
    if ($("hangup")) $("hangup").disabled = !["calling", "ringing", "answered", "connected"].includes(s);
    if ($("call")) $("call").disabled = s !== "idle" && s !== "ended";
  }

  phone.call = async function (to) {
    setState("calling");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(scheme + "//" + location.host + "/webrtc/ws");
    phone.ws = ws;
    const hello = await new Promise((resolve, reject) => {
      ws.onmessage = (ev) => resolve(JSON.parse(ev.data));
      ws.onerror = () => reject(new Error("WebSocket failed"));
    });
    phone.id = hello.id;
    const pc = new RTCPeerConnection({ iceServers: hello.ice_servers || [] });
    phone.pc = pc;
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    for (const t of stream.getAudioTracks()) phone.sender = pc.addTrack(t, stream);
    pc.ontrack = (ev) => { const a = $("remote"); if (a) a.srcObject = ev.streams[0] || new MediaStream([ev.track]); };
    pc.onicecandidate = (ev) => {
      if (ev.candidate && ws.readyState === 1) ws.send(JSON.stringify({ type: "candidate", candidate: ev.candidate.toJSON() }));
    };
    pc.onconnectionstatechange = () => log("peer: " + pc.connectionState);
    ws.onmessage = async (ev) => {
      const m = JSON.parse(ev.data);
      log("← " + m.type + (m.reason ? " " + m.status + " " + m.reason : "") + (m.error ? " " + m.error : ""));
      if (m.type === "answer") await pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
      else if (m.type === "candidate") { try { await pc.addIceCandidate(m.candidate); } catch (e) { log("candidate: " + e); } }
      else if (m.type === "ringing" && phone.state === "calling") setState("ringing");
      else if (m.type === "answered") setState("answered");
      else if (m.type === "connected") log("media connected");
      else if (m.type === "bye") { phone.endReason = m.status + " " + m.reason; end(); }
    };
    ws.onclose = () => { if (phone.state !== "ended") end(); };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    ws.send(JSON.stringify({ type: "call", to: to, sdp: pc.localDescription.sdp }));
  };

  function end() {
    setState("ended");
    if (phone.pc) phone.pc.close();
    if (phone.ws && phone.ws.readyState <= 1) phone.ws.close();
  }

  phone.hangup = function () {
    if (phone.ws && phone.ws.readyState === 1) phone.ws.send(JSON.stringify({ type: "bye" }));
    end();
  };

  phone.dtmf = function (digits) {
    if (phone.sender && phone.sender.dtmf) phone.sender.dtmf.insertDTMF(digits, 200, 100);
  };

  // Audio statistics of the call: what arrived from the engine and what was sent.
  phone.stats = async function () {
    const out = { packetsReceived: 0, packetsSent: 0, audioEnergy: 0 };
    if (!phone.pc) return out;
    const r = await phone.pc.getStats();
    r.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        out.packetsReceived += s.packetsReceived || 0;
      }
      if (s.type === "outbound-rtp" && s.kind === "audio") out.packetsSent += s.packetsSent || 0;
      if (s.type === "media-source" && s.kind === "audio") out.audioEnergy = s.totalAudioEnergy || 0;
    });
    return out;
  };

  if ($("dial")) {
    $("dial").addEventListener("submit", (e) => {
      e.preventDefault();
      phone.call($("to").value.trim()).catch((err) => { log("error: " + err); end(); });
    });
    $("hangup").addEventListener("click", () => phone.hangup());
    for (const k of "123456789*0#") {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = k;
      b.addEventListener("click", () => phone.dtmf(k));
      $("keys").appendChild(b);
    }
  }
})();
