#!/usr/bin/env bash
# Install what fleecesim's real-QEMU tests need (qemu-storage-daemon, qemu-io,
# qemu-img: Debian packages qemu-system-common and qemu-utils) and fio for
# `fleecesim calibrate` (which falls back to qemu-img bench without it).
# Idempotent and quiet; always exits 0 so CI can call it unconditionally
# (the tests skip, saying what is missing, when the binaries are absent).
have_all() {
    command -v qemu-storage-daemon >/dev/null 2>&1 &&
    command -v qemu-io >/dev/null 2>&1 &&
    command -v qemu-img >/dev/null 2>&1 &&
    command -v fio >/dev/null 2>&1
}
if have_all; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-qemu: apt-get not found; install qemu-utils, qemu-system-common and fio by hand (qemu tests will skip)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install-qemu: not root and no sudo; install qemu-utils, qemu-system-common and fio by hand (qemu tests will skip)"
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! $SUDO apt-get update -qq >"$log" 2>&1; then
    echo "install-qemu: apt-get update failed (qemu tests will skip):"; tail -n 3 "$log"
elif ! $SUDO apt-get install -y -qq --no-install-recommends qemu-utils qemu-system-common fio >"$log" 2>&1; then
    echo "install-qemu: apt-get install failed (qemu tests will skip):"; tail -n 3 "$log"
elif have_all; then
    echo "install-qemu: $(qemu-img --version | head -n 1)"
else
    echo "install-qemu: packages installed but a binary is still missing (qemu tests will skip)"
fi
rm -f "$log"
exit 0
