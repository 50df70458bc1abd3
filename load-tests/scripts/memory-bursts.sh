#!/usr/bin/env bash
# Memory after bursts of calls: starts `switchboard serve` (trusted 127.0.0.1, SIP on
# 127.0.0.1:17060, HTTP on :17080), registers a SIPp UAS as user `uas`, then runs ROUNDS bursts of
# CALLS calls at RATE CPS (0.5 s each) from a SIPp UAC through the B2BUA, printing the engine's
# RSS before, right after each burst, and 45 s and 90 s later (after Timers J/L and the purge).
#
#   load-tests/scripts/memory-bursts.sh [--database-url URL]     (needs sipp, python3, curl)
#
# Environment: ROUNDS (3), CALLS (20000), RATE (2000), BIN (target/release/switchboard).
# Everything on loopback, every process bounded by `timeout`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release/switchboard}
ROUNDS=${ROUNDS:-3}; CALLS=${CALLS:-20000}; RATE=${RATE:-2000}
DB=("$@")
WORK=$(mktemp -d)
trap 'kill "$EPID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/c.toml" <<EOF
[sip]
udp_listen = ["127.0.0.1:17060"]
tcp_listen = ["127.0.0.1:17060"]
[http]
listen = "127.0.0.1:17080"
[data]
dir = "$WORK/data"
[calls]
trusted_sources = ["127.0.0.1"]
EOF
"$BIN" serve --config "$WORK/c.toml" "${DB[@]}" > "$WORK/engine.log" 2>&1 &
EPID=$!
sleep 1.5
"$BIN" user add uas --password pw --config "$WORK/c.toml" "${DB[@]}" > /dev/null
python3 - <<'EOF'
import socket, hashlib, re, random
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.settimeout(2)
p = s.getsockname()[1]; cid = "memreg%d" % random.randint(0, 10**9)
def reg(cseq, auth=""):
    m = (f"REGISTER sip:127.0.0.1:17060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{cseq}{cid};rport\r\n"
         f"From: <sip:uas@127.0.0.1>;tag=1\r\nTo: <sip:uas@127.0.0.1>\r\nCall-ID: {cid}\r\nCSeq: {cseq} REGISTER\r\n"
         f"Contact: <sip:uas@127.0.0.1:17100>\r\nExpires: 3600\r\nMax-Forwards: 70\r\n{auth}Content-Length: 0\r\n\r\n")
    s.sendto(m.encode(), ("127.0.0.1", 17060)); return s.recv(5000).decode()
nonce = re.search(r'nonce="([^"]+)"', reg(1)).group(1)
h = lambda x: hashlib.md5(x.encode()).hexdigest()
ha1 = h("uas:switchboard:pw"); uri = "sip:127.0.0.1:17060"
resp = h(f"{ha1}:{nonce}:00000001:abc:auth:{h('REGISTER:' + uri)}")
print("register:", reg(2, f'Authorization: Digest username="uas", realm="switchboard", nonce="{nonce}", uri="{uri}", response="{resp}", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"\r\n').split("\r\n")[0])
EOF
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$EPID/status"; }
echo "baseline RSS: $(rss)"
for round in $(seq 1 "$ROUNDS"); do
    timeout -k 5 120 sipp -sn uas -i 127.0.0.1 -p 17100 -m "$CALLS" -nostdin -buff_size 4194304 > /dev/null 2>&1 &
    sleep 0.5
    timeout -k 5 120 sipp -sn uac 127.0.0.1:17060 -s uas -i 127.0.0.1 -p 17101 -m "$CALLS" -r "$RATE" -l 5000 \
        -d 500 -nostdin -buff_size 4194304 -timeout 90s > /dev/null 2>&1 && st=ok || st="failed calls"
    echo "round $round ($st): right after: $(rss)"
    sleep 45; echo "  after 45 s: $(rss)"
    sleep 45; echo "  after 90 s: $(rss)"
    curl -s 127.0.0.1:17080/metrics | grep -E "^(sip_transactions|calls_active|rtp_port_pairs_in_use) " | tr '\n' ' '; echo
    wait
done
