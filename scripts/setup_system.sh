#!/usr/bin/env bash
# Installs the Debian packages that carry the offline corpora (GCIDE dictionary, Python docs,
# Fashion-MNIST) when this machine allows it; otherwise says what to install and goes on.
set -u
packages="dict-gcide python3.11-doc dataset-fashion-mnist"
missing=""
for p in $packages; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null 2>&1; } \
        || echo "note: could not install$missing; tasks that need them will say so"
else
    echo "note: optional corpora missing; install with: sudo apt-get install$missing"
fi
exit 0
