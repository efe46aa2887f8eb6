"""Worker "hosts" on one machine, for tests: network namespaces joined by veth links.

`HostNetwork` makes, per host, a network namespace with a veth pair on a private /30
(10.<net>.<i>.1 on our side, .2 in the namespace, default route through us), plus one
service address (10.<net>.0.1, on our end of the first link) that every host routes to. The
machine's services listen on 127.0.0.1 only and stay untouched: `TcpRelay` listens on the
service address and relays to them. `host_command` wraps a command so that it runs in
the host's namespace with a mount namespace and a hostname of its own and private tmpfs
folders, so two hosts see neither each other's files nor a shared folder. `close` removes
every namespace and link made, and is safe to call after a failure half-way.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import threading
from collections.abc import Sequence

RELAY_CHUNK = 64 * 1024


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no `ip netns`), or None."""
    if os.geteuid() != 0:
        return "needs root to make network and mount namespaces"
    for tool in ("ip", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = f"wfprobe{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, netns: str | None = None) -> None:
    argv = ["ip", *(("-n", netns) if netns else ()), *args]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


class HostNetwork:
    """Namespaces `<prefix>-<name>` on 10.<net>.<i>.0/30 and the service address 10.<net>.0.1."""

    def __init__(self, names: Sequence[str], net: int, prefix: str) -> None:
        self.names = list(names)
        self.net = net
        self.prefix = prefix
        self.service_ip = f"10.{net}.0.1"
        self._made_ns: list[str] = []
        self._made_links: list[str] = []

    def netns(self, name: str) -> str:
        """The network namespace of one host."""
        return f"{self.prefix}-{name}"

    def address(self, name: str) -> str:
        """The host's own address on its veth link."""
        return f"10.{self.net}.{self.names.index(name) + 1}.2"

    def open(self) -> HostNetwork:
        """Make the service address, then each host's namespace and veth link."""
        try:
            for i, name in enumerate(self.names, start=1):
                ns = self.netns(name)
                _ip("netns", "add", ns)
                self._made_ns.append(ns)
                ours, theirs = f"{self.prefix}{i}h"[:15], f"{self.prefix}{i}n"[:15]
                _ip("link", "add", ours, "type", "veth", "peer", "name", theirs)
                self._made_links.append(ours)
                _ip("link", "set", theirs, "netns", ns)
                _ip("addr", "add", f"10.{self.net}.{i}.1/30", "dev", ours)
                _ip("link", "set", ours, "up")
                _ip("link", "set", "lo", "up", netns=ns)
                _ip("addr", "add", f"10.{self.net}.{i}.2/30", "dev", theirs, netns=ns)
                _ip("link", "set", theirs, "up", netns=ns)
                _ip("route", "add", "default", "via", f"10.{self.net}.{i}.1", netns=ns)
            # The service address sits on our end of the first link (it goes with it): it is
            # local here, and every host reaches it through its default route.
            _ip("addr", "add", f"{self.service_ip}/32", "dev", self._made_links[0])
        except BaseException:
            self.close()
            raise
        return self

    def host_command(
        self, name: str, private_dirs: Sequence[str], argv: Sequence[str]
    ) -> list[str]:
        """`argv` run as host `name`: its network, its own mounts and hostname, and an
        empty private tmpfs over each of `private_dirs`."""
        mounts = " && ".join(
            f"mount -t tmpfs -o size=256m tmpfs {shlex.quote(d)}" for d in private_dirs
        )
        script = f"hostname {shlex.quote(name)} && {mounts} && exec {shlex.join(argv)}"
        return [
            "ip", "netns", "exec", self.netns(name),
            "unshare", "--mount", "--uts", "--propagation", "private",
            "sh", "-c", script,
        ]  # fmt: skip

    def run_in(self, name: str, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run a short command in the host's network namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns(name), *argv], capture_output=True, text=True
        )

    def close(self) -> None:
        """Remove every namespace and link made (a veth goes with its namespace)."""
        for ns in reversed(self._made_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for link in reversed(self._made_links):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        self._made_ns.clear()
        self._made_links.clear()

    def leftovers(self) -> list[str]:
        """Namespaces and links of ours that still exist (for the test's own check)."""
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        found = [n for n in (self.netns(h) for h in self.names) if n in names]
        found += [w for w in links.split() if w.rstrip(":").split("@")[0].startswith(self.prefix)]
        return found


class TcpRelay:
    """Accepts on (listen_host, port) and relays each connection to (target_host, port)."""

    def __init__(self, listen_host: str, port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, port)
        self._server = socket.create_server((listen_host, port), backlog=256)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        """Stop accepting (open connections end with their peers)."""
        self._closed.set()
        self._server.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(RELAY_CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        source.close()
