#!/usr/bin/env bash
# Install what the interoperability tier needs (Debian 12 bookworm; run as root):
# DAViCal 1.1.12 on PHP's built-in server with PostgreSQL 15, SOGo 5.8.0 with
# PostgreSQL + memcached, Cyrus IMAP 3.6.1 with its CalDAV module (sasl2-bin for the
# password database; cyrus-admin's cyradm to look into a running fixture by hand), and
# SabreDAV 1.8.12's example server on PHP's built-in server with SQLite.
# Idempotent: does nothing when everything is already there.
# tests/servers_debian.py and tests/servers_cyrus_sabredav.py start each server with
# throw-away storage on 127.0.0.1; the system services these packages ship are not
# used (and not started here).
set -euo pipefail

packages=(
    davical php-cli php-pgsql postgresql sogo memcached
    cyrus-imapd cyrus-caldav cyrus-admin sasl2-bin
    php-sabre-dav php-sqlite3
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "interop tier: all packages present (${packages[*]})"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "interop tier: need root to install: ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d in containers keeps the packaged services from starting; that is what we want.
apt-get install -y -q "${missing[@]}"
echo "interop tier: installed ${missing[*]}"
