#!/usr/bin/env bash
# make-lab.sh - generate labelled real-tool traffic between network namespaces.
#
# Usage: make-lab.sh OUT_DIR [--seed N] [--only REGEX] [--set NAME]
#
# Builds a private lab (namespaces/veths prefixed "tsl-", addresses in
# 198.19.0.0/16 and fd19:7a1b:19::/64), starts servers in the victim namespace,
# runs benign and attack scenarios one at a time, captures each on the victim
# side with tcpdump and writes OUT_DIR/LABELS.tsv in the shared lab format
# (set = B, or --set NAME).  Everything is torn down on exit.  See scripts/lab/README.md.
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR [--seed N] [--only REGEX] [--set NAME]" >&2; exit 2; }

OUT_DIR=""
SEED=1
ONLY=""
SET=B
while (($#)); do
  case "$1" in
    --seed) SEED="${2:?--seed needs a value}"; shift 2 ;;
    --seed=*) SEED="${1#--seed=}"; shift ;;
    --only) ONLY="${2:?--only needs a regex}"; shift 2 ;;
    --set) SET="${2:?--set needs a name}"; shift 2 ;;
    --only=*) ONLY="${1#--only=}"; shift ;;
    -h|--help) usage ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *) [[ -z "$OUT_DIR" ]] || usage; OUT_DIR="$1"; shift ;;
  esac
done
[[ -n "$OUT_DIR" ]] || usage
[[ "$SEED" =~ ^[0-9]+$ ]] || { echo "--seed must be a non-negative integer" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "must run as root (namespaces, raw sockets)" >&2; exit 1; }

T0=$(date +%s)
RANDOM=$SEED          # every random draw below derives from the seed
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
W=$(mktemp -d /tmp/tsl-lab.XXXXXX)
chmod 755 "$W"
LABELS="$OUT_DIR/LABELS.tsv"
PKT_CAP=60000
MAX_SCN=50            # seconds a scenario command may run (plus ~3 s capture overhead)

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# ---------------------------------------------------------------- randomness
# rnd VAR LO HI : uniform integer in [LO,HI] (30-bit), drawn in this shell.
rnd() { printf -v "$1" '%d' $(( $2 + ((RANDOM << 15) | RANDOM) % ($3 - $2 + 1) )); }
# pick VAR a b c ... : one of the words
pick() { local -a _a=("${@:2}"); printf -v "$1" '%s' "${_a[RANDOM % ${#_a[@]}]}"; }

# ---------------------------------------------------------------- packages
export DEBIAN_FRONTEND=noninteractive
REQ_PKGS=(hping3 nmap hydra apache2-utils slowhttptest dnsperf dnsmasq-base iperf3
  openssh-server openssh-client tcpdump curl wget bind9-dnsutils bind9-host lighttpd
  lighttpd-mod-openssl chrony ntpsec-ntpdate isc-dhcp-client socat openssl
  iputils-ping netcat-openbsd ethtool iproute2 python3)
OPT_PKGS=(masscan ncrack medusa wrk siege avahi-daemon avahi-utils tshark)
POLICY_CREATED=0
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
install_pkgs() {
  local -a missing=() p
  for p in "${REQ_PKGS[@]}" "${OPT_PKGS[@]}"; do have_pkg "$p" || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then   # never auto-start sshd/dnsmasq/... on the host
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
    POLICY_CREATED=1
  fi
  log "installing: ${missing[*]}"
  apt-get update -qq || true
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    for p in "${missing[@]}"; do
      apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 || log "could not install $p"
    done
  fi
  if ((POLICY_CREATED)); then rm -f /usr/sbin/policy-rc.d; POLICY_CREATED=0; fi
  for p in "${REQ_PKGS[@]}"; do have_pkg "$p" || { log "required package $p missing"; exit 1; }; done
}
# ver PKG -> "PKG VERSION" for the tool column
ver() { printf '%s %s' "${2:-$1}" "$(dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?')"; }

# ---------------------------------------------------------------- topology
VIC4=198.19.100.2
VIC6=fd19:7a1b:19::2
declare -A IP4=([atk1]=198.19.7.10 [atk2]=198.19.33.5 [atk3]=198.19.61.77
                [cli1]=198.19.200.10 [cli2]=198.19.201.23 [cli3]=198.19.202.44)
declare -A IP6=([atk1]=fd19:7a1b:19::7:10 [cli1]=fd19:7a1b:19::200:10)
PEERS=(atk1 atk2 atk3 cli1 cli2 cli3 dhc)
BR=tsl-br0
SSH_USER=tsl-lab
SRV_PIDS=()
USER_CREATED=0

nsx() { local n=$1; shift; ip netns exec "tsl-$n" "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  log "cleaning up"
  local p
  for p in "${SRV_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${SRV_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  # anything still running inside our namespaces (started by us)
  for n in $(ip netns list 2>/dev/null | awk '/^tsl-/{print $1}'); do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$n" 2>/dev/null || true
  done
  if ((USER_CREATED)); then userdel "$SSH_USER" 2>/dev/null || true; fi
  if ((POLICY_CREATED)); then rm -f /usr/sbin/policy-rc.d; fi
  rm -rf "$W"
  log "total wall time $(( $(date +%s) - T0 )) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stale_cleanup() {   # re-runnable: remove leftovers of an aborted run
  local n p
  for n in $(ip netns list 2>/dev/null | awk '/^tsl-/{print $1}'); do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$n" 2>/dev/null || true
  done
  for n in $(ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^tsl-/{sub(/@.*/,"",$2); print $2}'); do
    ip link del "$n" 2>/dev/null || true
  done
}

noofld() { nsx "$1" ethtool -K "$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true; }

setup_net() {
  ip netns add tsl-vic
  nsx vic ip link set lo up
  nsx vic ip link add "$BR" type bridge stp_state 0 forward_delay 0 mcast_snooping 0
  nsx vic sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  nsx vic ip addr add "$VIC4/16" dev "$BR"
  nsx vic ip -6 addr add "$VIC6/64" dev "$BR" nodad
  nsx vic ip link set "$BR" up
  nsx vic ip route add 224.0.0.0/4 dev "$BR"
  local p
  for p in "${PEERS[@]}"; do
    ip netns add "tsl-$p"
    nsx "$p" ip link set lo up
    nsx "$p" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    ip link add "tsl-p-$p" type veth peer name "tsl-v-$p"
    ip link set "tsl-p-$p" netns "tsl-$p"
    ip link set "tsl-v-$p" netns tsl-vic
    nsx vic ip link set "tsl-v-$p" master "$BR" up
    noofld vic "tsl-v-$p"
    noofld "$p" "tsl-p-$p"
    if [[ -n "${IP4[$p]:-}" ]]; then nsx "$p" ip addr add "${IP4[$p]}/16" dev "tsl-p-$p"; fi
    if [[ -n "${IP6[$p]:-}" ]]; then nsx "$p" ip -6 addr add "${IP6[$p]}/64" dev "tsl-p-$p" nodad; fi
    nsx "$p" ip link set "tsl-p-$p" up
    nsx "$p" ip route add 224.0.0.0/4 dev "tsl-p-$p" 2>/dev/null || true
  done
  noofld vic "$BR"
  local i
  for i in $(seq 1 50); do
    nsx atk1 ping -c1 -W1 -q "$VIC4" >/dev/null 2>&1 && break; sleep 0.2
  done
}

# ---------------------------------------------------------------- servers
bg_ns() {   # bg_ns NS LOGNAME CMD... : start a long-running server inside NS
  local n=$1 name=$2; shift 2
  ip netns exec "tsl-$n" "$@" >"$W/$name.log" 2>&1 &
  SRV_PIDS+=("$!")
}

make_content() {
  mkdir -p "$W/www/static" "$W/www/private" "$W/www/api"
  local i
  printf '<html><head><title>tsl lab</title><link rel="stylesheet" href="/static/site.css"></head><body>%s</body></html>\n' \
    "$(for i in $(seq 1 40); do printf '<p>paragraph %d lorem ipsum dolor sit amet</p>' "$i"; done)" >"$W/www/index.html"
  cp "$W/www/index.html" "$W/www/page.html"
  cp "$W/www/index.html" "$W/www/about.html"
  printf 'secret area\n' >"$W/www/private/index.html"
  printf '{"status":"ok","items":[1,2,3]}\n' >"$W/www/api/status.json"
  for i in $(seq 1 24); do head -c $(( 2000 + i * 1500 )) /dev/urandom >"$W/www/static/asset$i.js"; done
  head -c 6000 /dev/urandom >"$W/www/static/site.css"
  head -c $((8 << 20)) /dev/urandom >"$W/www/f8m.bin"
  head -c $((64 << 20)) /dev/urandom >"$W/www/f64m.bin"
  head -c $((512 << 10)) /dev/urandom >"$W/www/f512k.bin"
  head -c $((6 << 20)) /dev/urandom >"$W/upload.bin"
}

start_servers() {
  make_content
  # --- TLS cert
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=www.lab.test" \
    -keyout "$W/tls.key" -out "$W/tls.crt" >/dev/null 2>&1
  cat "$W/tls.key" "$W/tls.crt" >"$W/tls.pem"
  # --- lighttpd: :80 :8080 (v4+v6), :443 TLS, basic auth on /private/
  HTTP_BASIC_PW=$(openssl rand -hex 12)
  printf 'admin:%s\n' "$HTTP_BASIC_PW" >"$W/lighttpd.users"
  cat >"$W/lighttpd.conf" <<EOF
server.modules = ("mod_access", "mod_auth", "mod_authn_file", "mod_openssl")
server.document-root = "$W/www"
server.bind = "0.0.0.0"
server.port = 80
server.pid-file = "$W/lighttpd.pid"
server.errorlog = "$W/lighttpd.err"
server.max-connections = 4096
server.max-fds = $(ulimit -n)
server.max-keep-alive-requests = 1000
index-file.names = ("index.html")
mimetype.assign = (".html" => "text/html", ".css" => "text/css", ".js" => "application/javascript",
                   ".json" => "application/json", "" => "application/octet-stream")
auth.backend = "plain"
auth.backend.plain.userfile = "$W/lighttpd.users"
auth.require = ("/private/" => ("method" => "basic", "realm" => "lab", "require" => "valid-user"))
\$SERVER["socket"] == ":8080" { }
\$SERVER["socket"] == "[::]:80" { }
\$SERVER["socket"] == ":443" { ssl.engine = "enable" ssl.pemfile = "$W/tls.pem" }
EOF
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  bg_ns vic lighttpd lighttpd -D -f "$W/lighttpd.conf"
  # --- sshd on 22 and 2222 (password + key; password is random, never in a wordlist)
  SSH_PW=$(openssl rand -base64 24 | tr -d '/+=')
  if ! id "$SSH_USER" >/dev/null 2>&1; then
    useradd -M -d "$W/home" -s /bin/bash "$SSH_USER"; USER_CREATED=1
  else
    usermod -d "$W/home" "$SSH_USER"; USER_CREATED=1
  fi
  echo "$SSH_USER:$SSH_PW" | chpasswd
  mkdir -p "$W/home" "$W/akeys" /run/sshd
  chown "$SSH_USER" "$W/home"
  ssh-keygen -q -t ed25519 -N '' -f "$W/ssh_host_ed25519_key"
  ssh-keygen -q -t ed25519 -N '' -f "$W/id_ed25519" -C tsl-client
  cp "$W/id_ed25519.pub" "$W/akeys/$SSH_USER"
  local port
  for port in 22 2222; do
    cat >"$W/sshd_$port.conf" <<EOF
Port $port
ListenAddress 0.0.0.0
ListenAddress ::
HostKey $W/ssh_host_ed25519_key
PidFile $W/sshd_$port.pid
AuthorizedKeysFile $W/akeys/%u
StrictModes no
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $SSH_USER
MaxStartups 64:30:256
LogLevel ERROR
Subsystem sftp internal-sftp
EOF
    bg_ns vic "sshd_$port" /usr/sbin/sshd -D -e -f "$W/sshd_$port.conf"
  done
  # --- dnsmasq: DNS on 53 with local records + DHCP
  bg_ns vic dnsmasq dnsmasq -k --conf-file=/dev/null --user=root --group=root \
    --pid-file="$W/dnsmasq.pid" --interface="$BR" --bind-interfaces \
    --no-resolv --no-hosts --local=/lab.test/ --domain=lab.test --cache-size=2000 \
    --dns-forward-max=1000 \
    --host-record=www.lab.test,$VIC4,$VIC6 --host-record=mail.lab.test,198.19.100.3 \
    --host-record=files.lab.test,198.19.100.4 --host-record=ssh.lab.test,$VIC4,$VIC6 \
    --host-record=ntp.lab.test,$VIC4 --cname=docs.lab.test,www.lab.test \
    --mx-host=lab.test,mail.lab.test,10 --txt-record=lab.test,"v=spf1 mx -all" \
    --srv-host=_ssh._tcp.lab.test,ssh.lab.test,22 --ptr-record=2.100.19.198.in-addr.arpa,www.lab.test \
    --dhcp-range=198.19.210.10,198.19.210.250,255.255.0.0,10m --dhcp-authoritative \
    --dhcp-leasefile="$W/dnsmasq.leases" --dhcp-option=option:dns-server,$VIC4 \
    --dhcp-option=option:ntp-server,$VIC4
  # --- chronyd NTP server
  cat >"$W/chrony.conf" <<EOF
local stratum 8
allow 198.19.0.0/16
allow fd19:7a1b:19::/64
port 123
cmdport 0
pidfile $W/chronyd.pid
driftfile $W/chrony.drift
EOF
  bg_ns vic chronyd chronyd -x -d -u root -f "$W/chrony.conf"
  # --- iperf3 on two ports
  bg_ns vic iperf3_5201 iperf3 -s -p 5201
  bg_ns vic iperf3_5301 iperf3 -s -p 5301
  # wait until the TCP services listen
  local i
  for i in $(seq 1 50); do
    if nsx vic ss -ltn | grep -q ':8080 ' && nsx vic ss -ltn | grep -q ':2222 ' \
       && nsx vic ss -lun | grep -q ':53 '; then break; fi
    sleep 0.2
  done
  nsx vic ss -ltun >"$W/listening.txt"
  log "servers up: $(awk 'NR>1{print $5}' "$W/listening.txt" | sort -u | tr '\n' ' ')"
}

make_inputs() {
  # DNS query files
  {
    local q
    for q in "www.lab.test A" "mail.lab.test A" "lab.test MX" "lab.test TXT" "docs.lab.test A" \
             "files.lab.test A" "ssh.lab.test AAAA" "_ssh._tcp.lab.test SRV" "ntp.lab.test A"; do
      echo "$q"; done
  } >"$W/dnsq_mix.txt"
  local i r
  : >"$W/dnsq_rand.txt"
  for i in $(seq 1 3000); do
    rnd r 100000 999999; printf 'x%s.lab.test A\n' "$r" >>"$W/dnsq_rand.txt"
  done
  # password/user lists: common words + seeded junk; the real passwords are random hex/base64
  local -a common=(123456 password 12345678 qwerty 123456789 12345 1234 111111 1234567 dragon
    123123 baseball abc123 football monkey letmein 696969 shadow master 666666 qwertyuiop
    123321 mustang 1234567890 michael 654321 superman 1qaz2wsx 7777777 121212 000000 qazwsx
    123qwe killer trustno1 jordan jennifer zxcvbnm asdfgh hunter buster soccer harley batman
    andrew tigger sunshine iloveyou 2000 charlie robert thomas hockey ranger daniel starwars
    klaster 112233 george computer michelle jessica pepper 1111 zxcvbn 555555 11111111 131313
    freedom 777777 pass maggie 159753 aaaaaa ginger princess joshua cheese amanda summer love
    ashley 6969 nicole chelsea biteme matthew access yankees 987654321 dallas austin thunder
    taylor matrix admin root toor changeme welcome raspberry ubuntu test guest)
  local n
  for n in 40 120 400; do
    local -a words=("${common[@]}")
    for i in $(seq 1 "$n"); do rnd r 0 999999; words+=("$(printf 'pw%06d' "$r")"); done
    printf '%s\n' "${words[@]:0:$n}" >"$W/pw$n.txt"
  done
  printf '%s\n' root admin "$SSH_USER" test user ubuntu oracle postgres deploy git >"$W/users.txt"
  python3 - "$W/udpblast.py" <<'EOF'
import sys
open(sys.argv[1], "w").write(r'''
import os, random, socket, sys, time
# udpblast.py HOST PORT_LO PORT_HI PPS SECONDS SIZE_LO SIZE_HI SEED
h, plo, phi, pps, dur, slo, shi, seed = sys.argv[1], *map(int, sys.argv[2:])
random.seed(seed)
fam = socket.AF_INET6 if ":" in h else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
t0 = time.time(); n = 0
while time.time() - t0 < dur:
    s.sendto(os.urandom(random.randint(slo, shi)), (h, random.randint(plo, phi)))
    n += 1
    lag = t0 + n / pps - time.time()
    if lag > 0: time.sleep(lag)
print("sent", n)
''')
EOF
  python3 - "$W/dnsloop.py" <<'EOF'
import sys
open(sys.argv[1], "w").write(r'''
import random, socket, struct, sys, time
# dnsloop.py SERVER QPS SECONDS SEED  -- random-subdomain (water torture) query loop
srv, qps, dur, seed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
random.seed(seed)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False)
t0 = time.time(); n = 0
while time.time() - t0 < dur:
    name = "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(random.randint(6, 20)))
    q = struct.pack(">HHHHHH", random.getrandbits(16), 0x0100, 1, 0, 0, 0)
    for lab in (name, "lab", "test"):
        q += bytes([len(lab)]) + lab.encode()
    q += b"\x00" + struct.pack(">HH", random.choice([1, 1, 1, 28, 15, 16]), 1)
    try: s.sendto(q, (srv, 53))
    except BlockingIOError: pass
    try:
        while True: s.recv(4096)
    except BlockingIOError: pass
    n += 1
    lag = t0 + n / qps - time.time()
    if lag > 0: time.sleep(lag)
print("sent", n)
''')
EOF
  # shellcheck disable=SC2016  # literal script text
  printf '%s\n' 'end=$((SECONDS + $2)); while [ $SECONDS -lt $end ]; do curl -s -o /dev/null "$1"; done' >"$W/curlloop.sh"
  cat >"$W/dhclient-script" <<'EOF'
#!/bin/sh
# minimal dhclient script: only configures the address inside the namespace
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT) ip addr add "$new_ip_address/16" dev "$interface" 2>/dev/null || true ;;
  EXPIRE|FAIL|RELEASE|STOP) [ -n "$old_ip_address" ] && ip addr del "$old_ip_address/16" dev "$interface" 2>/dev/null || true ;;
esac
exit 0
EOF
  chmod 755 "$W/dhclient-script"
}

# ---------------------------------------------------------------- capture + labels
pcap_count() {  # prints "packets bytes" (bytes = sum of on-wire frame lengths)
  python3 - "$1" <<'EOF'
import struct, sys
try: d = open(sys.argv[1], "rb").read()
except OSError: d = b""
if len(d) < 24: print(0, 0); sys.exit()
e = "<" if d[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
o, n, b = 24, 0, 0
while o + 16 <= len(d):
    _, _, incl, orig = struct.unpack(e + "IIII", d[o:o + 16])
    if o + 16 + incl > len(d): break
    o += 16 + incl; n += 1; b += orig
print(n, b)
EOF
}

ms_now() { date +%s.%3N; }
clean_field() { printf '%s' "$*" | tr '\t\n' '  ' | sed 's/  */ /g; s/^ //; s/ $//'; }

N_OK=0; N_FAIL=0; FAILED=(); SCN_RETRY=0
# run_scn KIND NAME NS TOOL ATTACKERS FILTER MAXSEC NOTE CMD
#   KIND benign or attack kind; NS peer namespace the command runs in; CMD is bash.
run_scn() {
  local kind=$1 name=$2 ns=$3 tool=$4 atk=$5 filt=$6 maxs=$7 note=$8 cmd=$9 victim=${10:-$VIC4}
  local rel
  if [[ $kind == benign ]]; then rel="benign/$name.pcap"; else rel="attack/$kind/$name.pcap"; fi
  if [[ -n "$ONLY" && ! "$rel" =~ $ONLY ]]; then return 0; fi
  ((maxs > MAX_SCN)) && maxs=$MAX_SCN
  local pcap="$OUT_DIR/$rel"
  mkdir -p "$(dirname "$pcap")"
  rm -f "$pcap"
  log "scenario $rel (ns tsl-$ns, <=${maxs}s): $cmd"
  local err="$W/tcpdump.err"
  : >"$err"
  ip netns exec tsl-vic tcpdump -i "$BR" -n -s 0 -B 32768 -U -c "$PKT_CAP" -w "$pcap" "$filt" 2>"$err" &
  local tdp=$! i
  for i in $(seq 1 50); do grep -q 'listening on' "$err" && break; sleep 0.1; done
  sleep 0.3
  local start end rc=0
  start=$(ms_now)
  (cd "$W" && timeout -s TERM -k 3 "$maxs" ip netns exec "tsl-$ns" bash -c "$cmd" >"$W/scn.out" 2>&1) || rc=$?
  end=$(ms_now)
  sleep 1.5
  kill -INT "$tdp" 2>/dev/null || true
  wait "$tdp" 2>/dev/null || true
  local pk by
  read -r pk by < <(pcap_count "$pcap")
  local notes="$note (rc=$rc)"
  ((rc == 124 || rc == 137)) && notes+="; stopped at the ${maxs}s time cap"
  ((pk >= PKT_CAP)) && notes+="; truncated at the ${PKT_CAP}-packet capture cap"
  local drops
  drops=$(awk '/packets dropped by kernel/{print $1; exit}' "$err")
  if [[ -n "$drops" && "$drops" != 0 ]]; then notes+="; tcpdump reported $drops packets dropped by kernel"; fi
  # A tool that crashed (hping3 once aborted with SIGABRT after 8 packets)
  # leaves a capture that is not the scenario: rerun it once, then count it
  # as failed.
  local crashed=0
  ((rc == 134 || rc == 139)) && crashed=1
  if ((crashed && ! SCN_RETRY)); then
    log "  !! the tool crashed (rc=$rc) after $pk packets; output: $(tail -c 300 "$W/scn.out" | tr '\n' ' '); running the scenario again"
    SCN_RETRY=1
    run_scn "$@"
    SCN_RETRY=0
    return 0
  fi
  if ((pk == 0 || crashed)); then
    ((pk == 0)) && notes+="; EMPTY CAPTURE"
    ((crashed)) && notes+="; THE TOOL CRASHED TWICE"
    N_FAIL=$((N_FAIL + 1)); FAILED+=("$rel")
    log "  !! $rel failed; tool output: $(tail -c 300 "$W/scn.out" | tr '\n' ' ')"
  else
    N_OK=$((N_OK + 1))
  fi
  log "  -> $pk packets, $by bytes, rc=$rc"
  local label=$kind
  # replace an older line for the same path (reruns with --only), then append
  if [[ -f "$LABELS" ]]; then
    awk -F'\t' -v p="$rel" '$2 != p' "$LABELS" >"$LABELS.tmp" && mv "$LABELS.tmp" "$LABELS"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$SET" "$rel" "$label" "$tool" \
    "$(clean_field "[ip netns exec tsl-$ns] $cmd")" "$atk" "$victim" "$start" "$end" "$pk" "$by" \
    "$filt" "$(clean_field "$notes")" >>"$LABELS"
}

# ================================================================= main
log "seed=$SEED out=$OUT_DIR work=$W"
install_pkgs
stale_cleanup
if [[ -z "$ONLY" ]]; then rm -rf "$OUT_DIR/benign" "$OUT_DIR/attack" "$LABELS"; fi
if [[ ! -s "$LABELS" ]]; then
  printf 'set\tpath\tlabel\ttool\tcommand\tattacker_ips\tvictim_ip\tstart_epoch\tend_epoch\tpackets\tbytes\tcapture_filter\tnotes\n' >"$LABELS"
fi
setup_net
start_servers
make_inputs

A1=${IP4[atk1]}; A2=${IP4[atk2]}; A3=${IP4[atk3]}
C1=${IP4[cli1]}; C2=${IP4[cli2]}; C3=${IP4[cli3]}
A1v6=${IP6[atk1]}; C1v6=${IP6[cli1]}
SSHO="-i $W/id_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
V=$VIC4
# scenario parameters, all drawn with rnd/pick (seeded) right before each scenario
n='' sl='' b='' c='' iv='' sz='' par='' pages='' lr='' bw='' t='' len='' port='' tt='' hi=''
tp='' mr='' rate='' lo='' cnt='' dp='' us='' dur='' bp='' d='' pps='' sd='' bs='' k='' r='' q='' m=''
hf() { printf 'ip host %s' "$1"; }

# ================================================================= benign
# (clients cli1/cli2/cli3/dhc are never used by an attack scenario)
rnd n 6 12; rnd sl 5 15
run_scn benign dns_dig_single cli1 "$(ver bind9-dnsutils dig)" - "$(hf "$C1")" 40 \
  "spaced single dig lookups vs dnsmasq, client=$C1" \
  "for i in \$(seq 1 $n); do for q in 'www.lab.test A' 'lab.test MX' 'docs.lab.test A' 'nosuch.lab.test A'; do dig +tries=1 +time=2 @$V \$q >/dev/null; sleep 0.$sl; done; done"

rnd n 4 8; rnd b 5 15
run_scn benign dns_resolver_bursts cli2 "$(ver bind9-host host)" - "$(hf "$C2")" 40 \
  "resolver-like bursts: host(1) + dig batch file, $b names per burst, client=$C2" \
  "for i in \$(seq 1 $n); do for h in www mail files ssh ntp docs; do host -W 2 \$h.lab.test $V >/dev/null & done; head -n $b $W/dnsq_mix.txt | sed 's/\$/ +tries=1/' | dig @$V -f - >/dev/null; wait; sleep 1.\$((RANDOM%9)); done"

rnd n 3 6
run_scn benign ntp_ntpdate cli1 "$(ver ntpsec-ntpdate ntpdate)" - "$(hf "$C1") and udp port 123" 40 \
  "NTP queries (ntpdate -q) to chronyd in the victim ns, client=$C1" \
  "for i in \$(seq 1 $n); do ntpdate -q $V; sleep 2; done"

run_scn benign ntp_chrony_client cli3 "$(ver chrony chronyd)" - "$(hf "$C3") and udp port 123" 30 \
  "chronyd -Q client (iburst) against chronyd server, client=$C3" \
  "chronyd -Q -t 20 -f /dev/null 'server $V iburst minpoll 0 maxpoll 1 maxsamples 8' 'pidfile $W/chronyq.pid'"

run_scn benign dhcp_dhclient dhc "$(ver isc-dhcp-client dhclient)" - "udp port 67 or udp port 68" 30 \
  "DHCP DORA + renew + release from a fresh namespace vs dnsmasq DHCP (198.19.210.0 pool); no-IP client, then leased address" \
  "dhclient -1 -v -sf $W/dhclient-script -lf $W/dhc.leases -pf $W/dhc.pid tsl-p-dhc; sleep 3; dhclient -1 -v -sf $W/dhclient-script -lf $W/dhc.leases -pf $W/dhc.pid -r tsl-p-dhc; sleep 1; dhclient -1 -v -sf $W/dhclient-script -lf $W/dhc.leases -pf $W/dhc.pid tsl-p-dhc; sleep 2; dhclient -r -sf $W/dhclient-script -lf $W/dhc.leases -pf $W/dhc.pid tsl-p-dhc"

rnd c 20 40; pick iv 0.2 0.5 1; pick sz 56 64 120 1000
run_scn benign ping cli3 "$(ver iputils-ping ping)" - "$(hf "$C3") and icmp" 45 \
  "ICMP echo, $c pings every ${iv}s size $sz, client=$C3" \
  "ping -n -c $c -i $iv -s $sz $V >/dev/null"

if have_pkg avahi-daemon; then
  cat >"$W/avahi.conf" <<'EOF'
[server]
use-ipv4=yes
use-ipv6=no
enable-dbus=no
ratelimit-interval-usec=1000000
ratelimit-burst=1000
[publish]
publish-workstation=yes
[reflector]
[rlimits]
EOF
  mkdir -p "$W/avahi-svc"
  cat >"$W/avahi-svc/http.service" <<'EOF'
<?xml version="1.0" standalone='no'?>
<!DOCTYPE service-group SYSTEM "avahi-service.dtd">
<service-group><name>tsl web</name><service><type>_http._tcp</type><port>80</port></service></service-group>
EOF
  # avahi-daemon in the victim (own mount ns so its /run dir is private) + one in cli2,
  # then dig mDNS queries (one-shot/legacy unicast) from cli2.
  run_scn benign mdns_avahi cli2 "$(ver avahi-daemon avahi-daemon)" - "udp port 5353" 30 \
    "mDNS: avahi-daemon start/announce in client ns (victim runs avahi too) + one-shot mDNS queries, client=$C2" \
    "ip netns exec tsl-vic unshare -m sh -c 'mount -t tmpfs none /run; mkdir -p /run/avahi-daemon; exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f $W/avahi.conf' >$W/avahi-vic.log 2>&1 & v=\$!; unshare -m sh -c 'mount -t tmpfs none /run; mkdir -p /run/avahi-daemon; exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f $W/avahi.conf' >$W/avahi-cli.log 2>&1 & c=\$!; sleep 6; for i in 1 2 3 4; do dig +tries=1 +time=1 -p 5353 @224.0.0.251 tsl-vic.local A >/dev/null; dig +tries=1 +time=1 -p 5353 @224.0.0.251 _http._tcp.local PTR >/dev/null; sleep 1; done; kill \$c \$v; wait"
fi

rnd n 8 16; pick port 80 8080
run_scn benign http_curl_pages cli1 "$(ver curl)" - "$(hf "$C1")" 45 \
  "curl page/asset/json fetches with think time on :$port, client=$C1" \
  "for i in \$(seq 1 $n); do curl -s -o /dev/null http://$V:$port/index.html; curl -s -o /dev/null http://$V:$port/static/asset\$((i%24+1)).js; curl -s -o /dev/null http://$V:$port/api/status.json; sleep 0.\$((RANDOM%9+1)); done"

rnd n 8 15
run_scn benign https_curl cli2 "$(ver curl)" - "$(hf "$C2") and tcp port 443" 45 \
  "HTTPS (TLS, self-signed) GETs to lighttpd :443, new connection per request, client=$C2" \
  "for i in \$(seq 1 $n); do curl -sk -o /dev/null https://$V/page.html; curl -sk -o /dev/null https://$V/static/asset\$i.js; sleep 1; done"

rnd par 6 20; rnd pages 3 6
run_scn benign http_browser_bursts cli3 "$(ver curl)" - "$(hf "$C3")" 45 \
  "browser-like page loads: html then $par parallel asset connections, $pages pages with think time, client=$C3" \
  "for pg in \$(seq 1 $pages); do curl -s -o /dev/null http://$V/index.html; u=''; for a in \$(seq 1 $par); do u=\"\$u -o /dev/null http://$V/static/asset\$a.js\"; done; curl -s --parallel --parallel-max $par --no-keepalive \$u; sleep 2; done"

pick lr 20m 40m 60m
run_scn benign http_wget_download cli1 "$(ver wget)" - "$(hf "$C1")" 30 \
  "large file download (64 MiB, --limit-rate=$lr) with wget, client=$C1" \
  "wget -q -O /dev/null --limit-rate=$lr http://$V:8080/f64m.bin; wget -q -O /dev/null http://$V/f8m.bin"

rnd n 10 20
run_scn benign http_keepalive cli2 "$(ver curl)" - "$(hf "$C2")" 45 \
  "keep-alive HTTP: several URLs per connection, repeated, client=$C2" \
  "for i in \$(seq 1 $n); do curl -s -o /dev/null -o /dev/null -o /dev/null -o /dev/null http://$V:8080/index.html http://$V:8080/about.html http://$V:8080/static/site.css http://$V:8080/api/status.json; sleep 1; done"

rnd n 5 9
run_scn benign ssh_key_logins cli1 "$(ver openssh-client ssh)" - "$(hf "$C1")" 50 \
  "repeated successful key logins running commands on :22 and :2222, client=$C1" \
  "for i in \$(seq 1 $n); do p=\$([ \$((i%2)) = 0 ] && echo 22 || echo 2222); ssh $SSHO -p \$p $SSH_USER@$V 'uname -a; id; ls /etc | head -20; df -h' >/dev/null; sleep 1; done"

run_scn benign scp_sftp cli2 "$(ver openssh-client scp)" - "$(hf "$C2")" 45 \
  "scp upload of 6 MiB + sftp download of 512 KiB (key auth), client=$C2" \
  "scp $SSHO -P 22 $W/upload.bin $SSH_USER@$V:up.bin; echo 'get up.bin /dev/null' | sftp $SSHO -P 2222 -b - $SSH_USER@$V >/dev/null; scp $SSHO -P 22 $SSH_USER@$V:up.bin /dev/null; ssh $SSHO $SSH_USER@$V 'rm -f up.bin'"

pick bw 8M 16M 32M; rnd t 4 8
run_scn benign iperf3_tcp cli3 "$(ver iperf3)" - "$(hf "$C3")" 20 \
  "iperf3 TCP ${bw}bit/s for ${t}s on :5201 (incl. control conn), client=$C3" \
  "iperf3 -c $V -p 5201 -t $t -b $bw >/dev/null"

pick bw 2M 4M 6M; rnd t 4 8; pick len 600 1000 1400
run_scn benign iperf3_udp cli1 "$(ver iperf3)" - "$(hf "$C1")" 20 \
  "iperf3 UDP ${bw}bit/s len $len for ${t}s on :5301, client=$C1" \
  "iperf3 -c $V -p 5301 -u -t $t -b $bw -l $len >/dev/null"

rnd n 6 10; rnd c 1 3; rnd r 10 30
run_scn benign http_ab_lowrate cli2 "$(ver apache2-utils ab)" - "$(hf "$C2")" 40 \
  "ab at low concurrency (-c $c) in small batches of $r, client=$C2" \
  "for i in \$(seq 1 $n); do ab -q -n $r -c $c http://$V:8080/page.html >/dev/null; sleep 1; done"

rnd n 6 12
run_scn benign ipv6_web_ping cli1 "$(ver curl)" - "ip6 host $C1v6" 40 \
  "IPv6: ping6 + curl over [ULA] to :80 + ssh key login, client=$C1v6" \
  "ping -6 -n -c 5 -i 0.3 $VIC6 >/dev/null; for i in \$(seq 1 $n); do curl -s -o /dev/null http://[$VIC6]/index.html; curl -s -o /dev/null http://[$VIC6]/static/asset\$i.js; sleep 0.5; done; ssh $SSHO $SSH_USER@$VIC6 uptime >/dev/null" "$VIC6"

rnd n 4 6
run_scn benign office_mix cli3 "$(ver curl)" - "$(hf "$C3")" 45 \
  "mixed workstation traffic: DNS lookup, HTTPS+HTTP fetch, NTP, ssh command, client=$C3" \
  "for i in \$(seq 1 $n); do dig +short @$V www.lab.test >/dev/null; curl -sk -o /dev/null https://$V/index.html; curl -s -o /dev/null http://$V/page.html; ntpdate -q $V >/dev/null 2>&1; ssh $SSHO $SSH_USER@$V 'ls' >/dev/null; sleep 2; done"

# ================================================================= attacks
# ---- portscan
pick tt 4 5; rnd hi 1500 5000
run_scn portscan "nmap_sS_T${tt}" atk1 "$(ver nmap)" "$A1" "$(hf "$A1")" 40 \
  "nmap SYN scan -T$tt ports 1-$hi" "nmap -n -Pn -sS -T$tt -p1-$hi $V"
rnd tp 200 800
run_scn portscan nmap_sT_top atk2 "$(ver nmap)" "$A2" "$(hf "$A2")" 40 \
  "nmap connect scan -T3 --top-ports $tp" "nmap -n -Pn -sT -T3 --top-ports $tp $V"
run_scn portscan nmap_sU atk3 "$(ver nmap)" "$A3" "$(hf "$A3")" 45 \
  "nmap UDP scan of common UDP ports (-T4, 1 retry)" \
  "nmap -n -Pn -sU -T4 --max-retries 1 -p 7,9,53,67,69,88,111,123,137,161,162,500,514,520,623,1194,1434,1900,4500,5060,5353,11211,27015 $V"
run_scn portscan nmap_sV atk1 "$(ver nmap)" "$A1" "$(hf "$A1")" 50 \
  "nmap service/version detection (light) on open-ish ports" \
  "nmap -n -Pn -sV --version-light -T4 -p 22,53,80,443,2222,5201,5301,8080,8443,3306 $V"
rnd mr 300 600
run_scn portscan nmap_sS_lowrate atk2 "$(ver nmap)" "$A2" "$(hf "$A2")" 45 \
  "LOW RATE (~10x below shared nmap_sS ~5.5k probes/s): nmap -sS --max-rate $mr ports 1-4000" \
  "nmap -n -Pn -sS -T3 --max-rate $mr -p1-4000 $V"
if have_pkg masscan; then
  rnd rate 1000 3000; rnd hi 3000 10000
  run_scn portscan masscan atk3 "$(ver masscan)" "$A3" "$(hf "$A3")" 40 \
    "masscan SYN scan ports 1-$hi at --rate $rate (masscan does not exit by itself in a netns; bounded by timeout)" \
    "timeout $((hi / rate + 8)) masscan $V -p1-$hi --rate $rate --wait 2 -e tsl-p-atk3 --adapter-ip $A3 --router-mac \$(ip netns exec tsl-vic cat /sys/class/net/$BR/address 2>/dev/null || ip neigh show $V | awk '{print \$5}')"
fi
rnd lo 1 200; rnd cnt 300 800
run_scn portscan nc_z_loop atk1 "$(ver netcat-openbsd nc)" "$A1" "$(hf "$A1")" 40 \
  "sequential TCP connect scan with a nc -z loop over $cnt ports" \
  "for p in \$(seq $lo $((lo + cnt))); do nc -z -w 1 $V \$p 2>/dev/null; done"
run_scn portscan nmap_sS_ipv6 atk1 "$(ver nmap)" "$A1v6" "ip6 host $A1v6" 40 \
  "nmap -6 SYN scan ports 1-2000 over the ULA" "nmap -6 -n -Pn -sS -T4 -p1-2000 $VIC6" "$VIC6"

# ---- synflood
pick dp 80 8080 443; rnd us 150 400; rnd dur 8 14
run_scn synflood hping3_syn_a atk1 "$(ver hping3)" "$A1" "$(hf "$A1")" $((dur + 5)) \
  "non-spoofed SYN flood to :$dp, one SYN every ${us}us" \
  "hping3 -S -p $dp -i u$us -c $((dur * 1000000 / us)) $V"
rnd us 60 120; rnd dur 5 10; rnd bp 1025 60000
run_scn synflood hping3_syn_fast atk2 "$(ver hping3)" "$A2" "$(hf "$A2")" $((dur + 5)) \
  "fast non-spoofed SYN flood to :22 from base port $bp, ${us}us interval" \
  "hping3 -S -p 22 -s $bp -i u$us -c $((dur * 1000000 / us)) $V"
rnd us 100 250; rnd dur 6 10
run_scn synflood hping3_syn_spoofed atk3 "$(ver hping3)" "random-spoofed (--rand-source)" "tcp port 2222" $((dur + 5)) \
  "spoofed SYN flood to :2222 (--rand-source); SYN-ACKs to spoofed sources are unroutable" \
  "hping3 -S -p 2222 --rand-source -i u$us -c $((dur * 1000000 / us)) $V"
rnd us 1800 2500; rnd dur 15 25
run_scn synflood hping3_syn_lowrate atk1 "$(ver hping3)" "$A1" "$(hf "$A1")" $((dur + 5)) \
  "LOW RATE (~10x below shared ~5-6k SYN/s): SYN to :80 every ${us}us" \
  "hping3 -S -p 80 -i u$us -c $((dur * 1000000 / us)) $V"
rnd rate 1000 3000; rnd dur 6 10
run_scn synflood nping_syn atk2 "$(ver nmap nping)" "$A2" "$(hf "$A2")" $((dur + 5)) \
  "nping TCP SYN at --rate $rate to :8080" \
  "nping --tcp --flags syn -p 8080 --rate $rate -c $((rate * dur)) -H -N $V >/dev/null"

# ---- udpflood
rnd us 100 300; rnd d 64 512; rnd port 9000 9999; rnd dur 6 10
run_scn udpflood hping3_udp atk1 "$(ver hping3)" "$A1" "$(hf "$A1")" $((dur + 5)) \
  "UDP flood to closed :$port, ${d}B payload, ${us}us interval (+ICMP unreachables)" \
  "hping3 --udp -p $port -d $d -i u$us -c $((dur * 1000000 / us)) $V"
rnd us 3500 4500; rnd dur 15 25
run_scn udpflood hping3_udp_lowrate atk2 "$(ver hping3)" "$A2" "$(hf "$A2")" $((dur + 5)) \
  "LOW RATE (~10x below shared ~2.5k pps): UDP to :53 (open dnsmasq) junk 256B every ${us}us" \
  "hping3 --udp -p 53 -d 256 -i u$us -c $((dur * 1000000 / us)) $V"
rnd pps 2000 5000; rnd dur 6 10; rnd sd 1 100000
run_scn udpflood python_udpblast atk3 "$(ver python3)" "$A3" "$(hf "$A3")" $((dur + 5)) \
  "python UDP blaster: $pps pps, random dst ports 1024-65535, 32-1200B random payload" \
  "python3 $W/udpblast.py $V 1024 65535 $pps $dur 32 1200 $sd"
rnd dur 3 5; pick bs 512 1024 1400; rnd port 20000 30000
run_scn udpflood socat_udp atk1 "$(ver socat)" "$A1" "$(hf "$A1")" $((dur + 3)) \
  "socat streaming /dev/urandom as ${bs}B datagrams to :$port as fast as possible" \
  "timeout $dur socat -u -b $bs OPEN:/dev/urandom UDP-SENDTO:$V:$port || true"
rnd us 200 400; rnd dur 5 8
run_scn udpflood hping3_udp_iperfport atk2 "$(ver hping3)" "$A2" "$(hf "$A2")" $((dur + 5)) \
  "UDP flood to the iperf3 port :5201 (closed for UDP), random src ports, 1000B, ${us}us" \
  "hping3 --udp -p 5201 -d 1000 -i u$us -c $((dur * 1000000 / us)) $V"

# ---- icmpflood
rnd us 100 250; rnd d 56 1000; rnd dur 6 10
run_scn icmpflood hping3_icmp atk1 "$(ver hping3)" "$A1" "$(hf "$A1") and icmp" $((dur + 5)) \
  "ICMP echo flood ${d}B every ${us}us + replies" \
  "hping3 --icmp -d $d -i u$us -c $((dur * 1000000 / us)) $V"
pick sz 56 512 1400; rnd c 10000 25000
run_scn icmpflood ping_flood atk2 "$(ver iputils-ping ping)" "$A2" "$(hf "$A2") and icmp" 20 \
  "ping -f (flood) size $sz, $c echoes" "ping -n -q -f -s $sz -c $c $V"
rnd us 3000 3600; rnd dur 15 25
run_scn icmpflood hping3_icmp_lowrate atk3 "$(ver hping3)" "$A3" "$(hf "$A3") and icmp" $((dur + 5)) \
  "LOW RATE (~10x below shared ~3k echo/s): ICMP echo 120B every ${us}us" \
  "hping3 --icmp -d 120 -i u$us -c $((dur * 1000000 / us)) $V"
pick sz 1200 1472 4000; rnd c 1500 3000
run_scn icmpflood ping_i001_ipv6 atk1 "$(ver iputils-ping ping)" "$A1v6" "ip6 host $A1v6 and icmp6" 40 \
  "IPv6 ping -i 0.005 size $sz (fragmented when >MTU), $c echoes" \
  "ping -6 -n -q -i 0.005 -s $sz -c $c $VIC6 >/dev/null" "$VIC6"

# ---- httpflood
rnd c 60 200; rnd n 3000 8000
run_scn httpflood ab_flood atk1 "$(ver apache2-utils ab)" "$A1" "$(hf "$A1") and tcp port 80" 30 \
  "ab GET flood -c $c -n $n on :80 /index.html" "ab -q -n $n -c $c -s 10 http://$V/index.html >/dev/null"
if have_pkg wrk; then
  rnd c 50 300; rnd dur 6 10
  run_scn httpflood wrk_keepalive atk2 "$(ver wrk)" "$A2" "$(hf "$A2") and tcp port 8080" $((dur + 8)) \
    "wrk keep-alive flood -t2 -c $c -d ${dur}s on :8080 /page.html" "wrk -t2 -c $c -d ${dur}s http://$V:8080/page.html"
fi
if have_pkg siege; then
  rnd c 20 60; rnd dur 6 10
  run_scn httpflood siege_bench atk3 "$(ver siege)" "$A3" "$(hf "$A3")" $((dur + 8)) \
    "siege benchmark -c $c for ${dur}s on /about.html and the TLS port" \
    "printf 'http://$V/about.html\nhttps://$V/page.html\nhttp://$V/api/status.json\n' >siege.urls; siege -q -b -c $c -t ${dur}S -f siege.urls >/dev/null 2>&1"
fi
rnd k 8 20; rnd dur 8 12
run_scn httpflood curl_loops_distributed atk2 "$(ver curl)" "$A2,$A3" "$(hf "$A2") or $(hf "$A3")" $((dur + 5)) \
  "distributed parallel curl loops ($k loops each from 2 attackers) on :8080" \
  "for j in \$(seq 1 $k); do bash $W/curlloop.sh http://$V:8080/static/asset1.js $dur & ip netns exec tsl-atk3 bash $W/curlloop.sh http://$V:8080/api/status.json $dur & done; wait"
rnd dur 15 25
run_scn httpflood curl_loop_lowrate atk1 "$(ver curl)" "$A1" "$(hf "$A1")" $((dur + 5)) \
  "LOW RATE (~10x below shared ab ~2k req/s): ~150-200 new-connection GETs/s on :80" \
  "end=\$((SECONDS+$dur)); while [ \$SECONDS -lt \$end ]; do curl -s -o /dev/null http://$V/index.html & sleep 0.005; done; wait"

# ---- slowloris (slow HTTP DoS)
rnd c 200 600; rnd r 50 150; rnd dur 25 40
run_scn slowloris slowhttptest_headers atk1 "$(ver slowhttptest)" "$A1" "$(hf "$A1") and tcp port 80" $((dur + 8)) \
  "slow headers (slowloris) -c $c -r $r/s, 10s between header lines" \
  "slowhttptest -c $c -H -i 10 -r $r -t GET -x 24 -p 3 -l $dur -u http://$V/index.html >/dev/null"
rnd c 200 500; rnd r 40 120; rnd dur 25 40
run_scn slowloris slowhttptest_body atk2 "$(ver slowhttptest)" "$A2" "$(hf "$A2") and tcp port 8080" $((dur + 8)) \
  "slow body (R-U-Dead-Yet) POST -c $c -r $r/s, Content-Length 8192, 5s between chunks" \
  "slowhttptest -c $c -B -i 5 -r $r -s 8192 -t POST -x 10 -p 3 -l $dur -u http://$V:8080/index.html >/dev/null"
rnd c 50 200; rnd r 20 60; rnd dur 25 40
run_scn slowloris slowhttptest_slowread atk3 "$(ver slowhttptest)" "$A3" "$(hf "$A3") and tcp port 80" $((dur + 8)) \
  "slow read -c $c -r $r/s on the 8 MiB file, window 10-20, reads 32B every 3s" \
  "slowhttptest -c $c -X -r $r -w 10 -y 20 -n 3 -z 32 -k 3 -p 3 -l $dur -u http://$V/f8m.bin >/dev/null"
rnd dur 30 40
run_scn slowloris slowhttptest_headers_lowrate atk1 "$(ver slowhttptest)" "$A1" "$(hf "$A1") and tcp port 8080" $((dur + 8)) \
  "LOW RATE (10x below shared -c 400 -r 100): slow headers -c 40 -r 10 on :8080" \
  "slowhttptest -c 40 -H -i 10 -r 10 -t GET -x 24 -p 3 -l $dur -u http://$V:8080/page.html >/dev/null"

# ---- sshbrute (ssh only) / bruteforce (other protocols)
rnd t 4 8
run_scn sshbrute hydra_ssh_22 atk1 "$(ver hydra)" "$A1" "$(hf "$A1") and tcp port 22" 45 \
  "hydra ssh -t $t, user $SSH_USER, 120-word list; all attempts fail (random password)" \
  "hydra -I -q -l $SSH_USER -P $W/pw120.txt -t $t -s 22 $V ssh"
rnd t 2 4
run_scn sshbrute hydra_ssh_2222_users atk2 "$(ver hydra)" "$A2" "$(hf "$A2") and tcp port 2222" 45 \
  "hydra ssh -t $t on :2222, 10 users x 40 passwords (loop users)" \
  "hydra -I -q -u -L $W/users.txt -P $W/pw40.txt -t $t -s 2222 $V ssh"
if have_pkg medusa; then
  rnd t 2 6
  run_scn sshbrute medusa_ssh atk3 "$(ver medusa)" "$A3" "$(hf "$A3") and tcp port 22" 45 \
    "medusa ssh module -t $t, users x 40 passwords" \
    "medusa -M ssh -h $V -n 22 -U $W/users.txt -P $W/pw40.txt -t $t -T 1 >/dev/null"
fi
if have_pkg ncrack; then
  run_scn sshbrute ncrack_ssh atk3 "$(ver ncrack)" "$A3" "$(hf "$A3") and tcp port 2222" 45 \
    "ncrack ssh on :2222, 3 users x 120 passwords" \
    "head -3 $W/users.txt >ncusers.txt; ncrack -v -T4 --user \$(paste -sd, ncusers.txt) -P $W/pw120.txt ssh://$V:2222"
fi
run_scn sshbrute hydra_ssh_lowrate atk1 "$(ver hydra)" "$A1" "$(hf "$A1") and tcp port 22" 50 \
  "LOW RATE (~10x below shared hydra -t 4 ~4 pkt/s): hydra -c 4 (one guess per 4s, -t 1)" \
  "hydra -I -q -l admin -P $W/pw40.txt -c 4 -s 22 $V ssh"
rnd t 4 16
run_scn bruteforce hydra_http_basic atk2 "$(ver hydra)" "$A2" "$(hf "$A2") and tcp port 8080" 45 \
  "hydra http-get basic-auth brute force on :8080/private/ -t $t, user admin (kind bruteforce: not ssh)" \
  "hydra -I -q -l admin -P $W/pw400.txt -t $t -s 8080 $V http-get /private/"
if have_pkg medusa; then
  run_scn bruteforce medusa_http_basic atk3 "$(ver medusa)" "$A3" "$(hf "$A3") and tcp port 80" 45 \
    "medusa http basic-auth brute force on :80/private/ (kind bruteforce)" \
    "medusa -M http -h $V -n 80 -m DIR:/private/ -u admin -P $W/pw400.txt -t 4 >/dev/null"
fi

# ---- dnsflood
rnd q 1500 4000; rnd c 4 16; rnd dur 8 12
run_scn dnsflood dnsperf_mix atk1 "$(ver dnsperf)" "$A1" "$(hf "$A1")" $((dur + 6)) \
  "dnsperf -Q $q -c $c record mix for ${dur}s" \
  "dnsperf -s $V -d $W/dnsq_mix.txt -c $c -Q $q -l $dur -t 2 >/dev/null"
rnd q 140 170; rnd dur 20 30
run_scn dnsflood dnsperf_lowrate atk2 "$(ver dnsperf)" "$A2" "$(hf "$A2")" $((dur + 6)) \
  "LOW RATE (10x below shared -Q 1500): dnsperf -Q $q -c 2 for ${dur}s" \
  "dnsperf -s $V -d $W/dnsq_mix.txt -c 2 -Q $q -l $dur -t 2 >/dev/null"
rnd q 1000 3000; rnd dur 8 12; rnd sd 1 100000
run_scn dnsflood python_random_subdomain atk3 "$(ver python3)" "$A3" "$(hf "$A3")" $((dur + 5)) \
  "random-subdomain (water torture) query loop, $q qps for ${dur}s, NXDOMAIN answers" \
  "python3 $W/dnsloop.py $V $q $dur $sd"
rnd m 3000 6000
run_scn dnsflood resperf_ramp atk1 "$(ver dnsperf resperf)" "$A1" "$(hf "$A1")" 30 \
  "resperf ramp to $m qps over 10s with random NXDOMAIN names" \
  "resperf -s $V -d $W/dnsq_rand.txt -R -m $m -r 10 -c 2 -C 4 -t 3 -P /dev/null >/dev/null"
rnd q 800 2000
run_scn dnsflood dnsperf_ipv6 atk1 "$(ver dnsperf)" "$A1v6" "ip6 host $A1v6" 16 \
  "dnsperf over IPv6 ULA -Q $q -c 4 for 8s" \
  "dnsperf -s $VIC6 -d $W/dnsq_mix.txt -c 4 -Q $q -l 8 -t 2 >/dev/null" "$VIC6"

log "scenarios ok=$N_OK failed=$N_FAIL ${FAILED[*]:-}"
log "labels: $LABELS"
