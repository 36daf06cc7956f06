#!/usr/bin/env bash
# Installs what the tests, the benchmark and the demo need, and checks the
# rest. Safe to run again: it installs a Debian package only when the command
# it provides is missing.
#
#   scripts/deps.sh          network tools, packet capture, firewalls
#   scripts/deps.sh --dns    also dnsperf and dnsmasq (DNS benchmark)
set -euo pipefail

want_dns=0
for arg in "$@"; do
	case "$arg" in
	--dns) want_dns=1 ;;
	-h | --help)
		sed -n '2,8p' "$0"
		exit 0
		;;
	*)
		echo "deps.sh: unknown argument $arg (try --help)" >&2
		exit 2
		;;
	esac
done

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: must run as root (network namespaces and apt-get need it); try: sudo $0" >&2
	exit 1
fi

# command -> Debian package that provides it
declare -A pkg_for=(
	[ip]=iproute2
	[ping]=iputils-ping
	[iperf3]=iperf3
	[chromium]=chromium
	[tcpdump]=tcpdump
	[dig]=dnsutils
	[nft]=nftables
	[iptables]=iptables
	[ps]=procps
	[ethtool]=ethtool
	# The Docker and Podman tests' image is a rootfs of static busybox.
	[busybox]=busybox-static
	[podman]=podman
	[curl]=curl
)
if [ "$want_dns" -eq 1 ]; then
	pkg_for[dnsperf]=dnsperf
	pkg_for[dnsmasq]=dnsmasq
fi

missing=()
for cmd in "${!pkg_for[@]}"; do
	# sbin is not on every root PATH in containers.
	if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1; then
		missing+=("${pkg_for[$cmd]}")
	fi
done

if [ "${#missing[@]}" -gt 0 ]; then
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	echo "deps.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# iperf3's package may ask to start a daemon; make sure none runs.
	if command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now iperf3 >/dev/null 2>&1 || true
	fi
else
	echo "deps.sh: all packages present"
fi

if ! PATH="$PATH:/usr/local/go/bin" command -v go >/dev/null 2>&1; then
	echo "deps.sh: Go is missing; install it to /usr/local/go (go.mod wants $(awk '/^go /{print $2}' "$(dirname "$0")/../go.mod"))" >&2
	exit 1
fi
if ! command -v go >/dev/null 2>&1; then
	echo "deps.sh: Go is installed in /usr/local/go/bin but not on PATH; run: export PATH=\$PATH:/usr/local/go/bin" >&2
	exit 1
fi
echo "deps.sh: $(go version)"

if [ ! -c /dev/net/tun ]; then
	echo "deps.sh: warning: /dev/net/tun is missing; the router needs TUN/TAP (modprobe tun)" >&2
fi
echo "deps.sh: ok"
