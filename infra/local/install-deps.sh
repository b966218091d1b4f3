#!/usr/bin/env bash
# Installs what building and testing valkey-sessions needs on Debian 12: Valkey 8 (from
# bookworm-backports), protoc, openssl; with --test also what the network-fault tests use
# (iproute2's `ip netns` and `ss`, iptables). Idempotent: installs only what is missing.
set -euo pipefail

need=()
if [ "${1:-}" = "--test" ]; then
  command -v ip >/dev/null 2>&1 && command -v ss >/dev/null 2>&1 || need+=(iproute2)
  command -v iptables >/dev/null 2>&1 || need+=(iptables)
fi
command -v valkey-server >/dev/null 2>&1 || need+=(valkey-server)
command -v valkey-cli >/dev/null 2>&1 || need+=(valkey-tools)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1 || ! grep -qi debian /etc/os-release 2>/dev/null; then
  echo "install-deps: missing ${need[*]}; this script handles Debian only." >&2
  echo "Elsewhere install Valkey 8 and protoc yourself, or run: docker compose -f infra/docker/compose.yaml up" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
if [[ " ${need[*]} " == *" valkey-"* ]] && ! apt-cache policy 2>/dev/null | grep -q "${codename}-backports"; then
  echo "deb http://deb.debian.org/debian ${codename}-backports main" | $sudo tee /etc/apt/sources.list.d/backports.list >/dev/null
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
pkgs=()
for p in "${need[@]}"; do
  case "$p" in
    valkey-*) $sudo apt-get install -y -qq -t "${codename}-backports" "$p" ;;
    *) pkgs+=("$p") ;;
  esac
done
[ ${#pkgs[@]} -eq 0 ] || $sudo apt-get install -y -qq "${pkgs[@]}"
# The Debian package starts a system-wide valkey on 6379; our scripts run their own instances.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet valkey-server 2>/dev/null; then
  $sudo systemctl disable --now valkey-server >/dev/null 2>&1 || true
fi
valkey-server --version
