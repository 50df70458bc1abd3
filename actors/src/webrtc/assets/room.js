// The engine's video room page: /webrtc/room?room=NAME&role=agent|customer|supervisor.
// One WebSocket (/webrtc/ws) and one peer connection per page, with three sendrecv
// transceivers in a fixed order (audio, camera, screen) and a "chat" data channel. The screen
// slot carries a placeholder until the customer consents to share; the real screen is then
// swapped in with replaceTrack, so no renegotiation is needed.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const q = new URLSearchParams(location.search);
  const role = q.get("role") || "customer";
  let roomName = q.get("room");
  if (!roomName) {
    const a = new Uint8Array(12);
    crypto.getRandomValues(a);
    roomName = "r-" + Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
    history.replaceState(null, "", "?room=" + roomName + "&role=" + role);
  }
  const room = { role, name: roomName, state: "idle", pc: null, ws: null, chat: [], tracks: {}, events: [] };
  window.room = room;
  const log = (s) => { room.events.push(s); if ($("log")) $("log").textContent += s + "\n"; };
  const setState = (s) => { room.state = s; if ($("state")) $("state").textContent = s; };
  if ($("room-name")) $("room-name").textContent = roomName;
  if ($("role")) $("role").textContent = role;
  if (role === "agent" && $("invite")) {
    $("invite").textContent = "Customer link: " + location.origin + location.pathname + "?room=" + roomName + "&role=customer";
    $("request-screen").hidden = false;
  }

  function placeholderTrack() {
    const c = document.createElement("canvas");
    c.width = 320; c.height = 240;
    c.getContext("2d").fillRect(0, 0, 320, 240);
    return c.captureStream(1).getVideoTracks()[0];
  }

  function send(m) { if (room.ws && room.ws.readyState === 1) room.ws.send(JSON.stringify(m)); }

  room.join = async function () {
    setState("joining");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(scheme + "//" + location.host + "/webrtc/ws");
    room.ws = ws;
    const hello = await new Promise((resolve, reject) => {
      ws.onmessage = (ev) => resolve(JSON.parse(ev.data));
      ws.onerror = () => reject(new Error("WebSocket failed"));
    });
    room.id = hello.id;
    const pc = new RTCPeerConnection({ iceServers: hello.ice_servers || [] });
    room.pc = pc;
    const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
    const mic = new MediaStream(media.getAudioTracks());
    const cam = new MediaStream(media.getVideoTracks());
    const screen = new MediaStream([placeholderTrack()]);
    if ($("local")) $("local").srcObject = cam;
    pc.addTrack(mic.getAudioTracks()[0], mic);
    pc.addTrack(cam.getVideoTracks()[0], cam);
    room.screenSender = pc.addTrack(screen.getVideoTracks()[0], screen);
    const streams = {};
    streams[mic.id] = "audio"; streams[cam.id] = "camera"; streams[screen.id] = "screen";
    const dc = pc.createDataChannel("chat");
    room.dc = dc;
    dc.onmessage = (ev) => { room.chat.push(ev.data); if ($("chat")) $("chat").textContent += "them: " + ev.data + "\n"; };
    pc.ontrack = (ev) => {
      const slot = ev.streams[0] ? ev.streams[0].id : ev.track.kind;
      room.tracks[ev.track.id] = slot;
      const el = slot === "screen" ? $("remote-screen") : slot === "camera" ? $("remote-camera") : $("remote-audio");
      if (el) el.srcObject = new MediaStream([ev.track]);
    };
    pc.onicecandidate = (ev) => { if (ev.candidate) send({ type: "candidate", candidate: ev.candidate.toJSON() }); };
    pc.onconnectionstatechange = () => log("peer: " + pc.connectionState);
    ws.onmessage = async (ev) => {
      const m = JSON.parse(ev.data);
      log("← " + m.type + (m.reason ? " " + m.status + " " + m.reason : "") + (m.data ? " " + JSON.stringify(m.data) : "") + (m.role ? " " + m.role : ""));
      if (m.type === "answer") await pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
      else if (m.type === "candidate") { try { await pc.addIceCandidate(m.candidate); } catch (e) { log("candidate: " + e); } }
      else if (m.type === "connected") setState("connected");
      else if (m.type === "control" && m.data && m.data.action === "screen_request") {
        room.screenRequested = true;
        if ($("consent")) $("consent").style.display = "block";
      } else if (m.type === "control" && m.data && m.data.action === "screen_consent") {
        room.screenConsent = m.data.granted;
      } else if (m.type === "bye") { room.endReason = m.status + " " + m.reason; setState("ended"); pc.close(); }
    };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    send({ type: "join", room: roomName, role: role, sdp: pc.localDescription.sdp, streams: streams });
  };

  room.requestScreen = function () { send({ type: "control", data: { action: "screen_request" } }); };

  // The customer's answer to a screen request: share (getDisplayMedia, swapped into the screen
  // slot) or decline. Nothing is shared without this.
  room.consent = async function (granted) {
    if ($("consent")) $("consent").style.display = "none";
    if (granted) {
      try {
        const s = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
        await room.screenSender.replaceTrack(s.getVideoTracks()[0]);
        if ($("local")) $("local").title = "sharing the screen";
      } catch (e) {
        log("screen share failed: " + e);
        granted = false;
      }
    }
    room.sharing = granted;
    send({ type: "control", data: { action: "screen_consent", granted: granted } });
    return granted;
  };

  room.say = function (text) {
    if (room.dc && room.dc.readyState === "open") { room.dc.send(text); if ($("chat")) $("chat").textContent += "me: " + text + "\n"; return true; }
    return false;
  };

  room.leave = function () { send({ type: "bye" }); setState("ended"); if (room.pc) room.pc.close(); };

  // Frames received per remote slot (camera, screen) and audio packets.
  room.stats = async function () {
    const out = { camera: 0, screen: 0, audio: 0 };
    if (!room.pc) return out;
    const r = await room.pc.getStats();
    r.forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      const slot = room.tracks[s.trackIdentifier] || s.kind;
      if (s.kind === "video" && (slot === "camera" || slot === "screen")) out[slot] += s.framesReceived || 0;
      if (s.kind === "audio") out.audio += s.packetsReceived || 0;
    });
    return out;
  };

  if ($("chat-form")) {
    $("chat-form").addEventListener("submit", (e) => { e.preventDefault(); room.say($("chat-text").value); $("chat-text").value = ""; });
    $("request-screen").addEventListener("click", () => room.requestScreen());
    $("share").addEventListener("click", () => room.consent(true));
    $("decline").addEventListener("click", () => room.consent(false));
  }
  if (!q.has("manual")) room.join().catch((e) => { log("error: " + e); setState("failed"); });
})();
