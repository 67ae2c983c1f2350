#!/usr/bin/env python3
"""Hand check of the echo firmware through QEMU's port forward.

Usage: echo-check.py [PORT] [--throughput]   (PORT defaults to $RICOCHET_PORT or 7777)

Start the firmware first (`cargo run --release` in this folder). Readiness is
probed with a real echo and a timeout: QEMU's forwarder accepts TCP
connections even before the guest listens, so a successful connect() proves
nothing. Exits non-zero on the first failed check.
"""

import os
import socket
import sys
import threading
import time

HOST = "127.0.0.1"


def wait_ready(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as s:
                s.settimeout(0.5)
                s.sendall(b"ready?")
                if recv_exact(s, 6) == b"ready?":
                    return time.monotonic() - (deadline - timeout)
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"no echo on tcp {HOST}:{port} within {timeout}s")


def recv_exact(s, n):
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(min(65536, n - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def tcp_echo(port, size, timeout=30.0):
    """Sends `size` random bytes while reading the echo; returns seconds."""
    data = os.urandom(size)
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.settimeout(timeout)
        errors = []

        def writer():
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                errors.append(e)

        start = time.monotonic()
        t = threading.Thread(target=writer)
        t.start()
        got = recv_exact(s, size)
        elapsed = time.monotonic() - start
        t.join()
        # After our FIN the firmware closes its side: expect EOF.
        tail = s.recv(1)
    if errors:
        raise SystemExit(f"tcp send failed: {errors[0]}")
    if got != data:
        raise SystemExit(f"tcp echo mismatch: sent {size}, got {len(got)} bytes")
    if tail:
        raise SystemExit("tcp: extra bytes after the echo")
    return elapsed


def reconnects(port, n):
    ok = 0
    for i in range(n):
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                s.settimeout(2)
                msg = f"reconnect {i}".encode()
                s.sendall(msg)
                if recv_exact(s, len(msg)) == msg:
                    ok += 1
        except OSError:
            pass
    return ok


def concurrent(port, clients, size):
    results = [None] * clients

    def one(i):
        try:
            tcp_echo(port, size)
            results[i] = True
        except BaseException as e:  # SystemExit from tcp_echo included
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(r is True for r in results)


def udp_echo(port, size, tries=5):
    data = os.urandom(size)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        for _ in range(tries):
            s.sendto(data, (HOST, port))
            try:
                got, _ = s.recvfrom(65536)
            except socket.timeout:
                continue
            if got != data:
                raise SystemExit(f"udp echo mismatch ({len(got)} bytes back)")
            return True
    raise SystemExit(f"no udp echo of {size} bytes after {tries} tries")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    port = int(args[0]) if args else int(os.environ.get("RICOCHET_PORT", "7777"))
    waited = wait_ready(port)
    print(f"ready after {waited:.3f}s")

    elapsed = tcp_echo(port, 100 * 1024)
    print(f"tcp: 100 KiB random echoed intact in {elapsed:.3f}s")

    ok = reconnects(port, 30)
    print(f"tcp: {ok}/30 rapid reconnects echoed")
    if ok != 30:
        raise SystemExit(1)

    ok = concurrent(port, 4, 64 * 1024)
    print(f"tcp: {ok}/4 concurrent 64 KiB echoes intact")
    if ok != 4:
        raise SystemExit(1)

    udp_echo(port, 1400)
    print("udp: 1400-byte datagram echoed intact")

    if "--throughput" in sys.argv:
        for mib in (1, 4, 8):
            size = mib * 1024 * 1024
            elapsed = tcp_echo(port, size, timeout=120)
            print(f"tcp: {mib} MiB echoed in {elapsed:.2f}s = {size / elapsed / 1e6:.2f} MB/s each way")
    print("all checks passed")


if __name__ == "__main__":
    main()
