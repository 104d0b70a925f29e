"""Hosts with network stacks of their own, on this machine: Linux network namespaces joined
by veth pairs to bridges in the root namespace (Debian's iproute2; needs root).

``Network.create(hosts={...})`` makes one namespace per host and one bridge per network the
hosts are on (``front``: clients, the web app, the simulated Multitel and webhook
receivers; ``db``: the database; ``cache``: the broker and cache), each bridge a /24 of
``10.<n>.0.0/16`` with the root namespace at ``.1``, where the test's own servers listen.
No namespace has a default route or a name server: nothing leaves the machine, and no
name is ever looked up. ``cut(host, network)`` takes the host's link on that network
down at the bridge's end, as a pulled cable: packets are dropped, connections hang rather
than being refused; ``mend`` puts it back. ``destroy()`` removes every namespace, link
and bridge made, and nothing else.

Nothing here imports pytest or Django.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import subprocess
from dataclasses import dataclass, field

NETWORKS = ("front", "db", "cache")


class NamespacesUnavailable(RuntimeError):
    """This machine cannot make network namespaces (not root, no iproute2, no kernel support)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can (one is made and
    removed to find out)."""
    if shutil.which("ip") is None:
        return "the `ip` command is missing (Debian: apt-get install iproute2)"
    if os.geteuid() != 0:
        return f"making network namespaces needs root (this process runs as uid {os.geteuid()})"
    probe = f"pbrprobe{os.getpid() % 100000}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Host:
    name: str
    namespace: str
    index: int  # the last byte of its addresses
    links: dict[str, str] = field(default_factory=dict)  # network -> its veth at the bridge

    def exec_prefix(self) -> list[str]:
        """What to put before a command to run it on this host."""
        return ["ip", "netns", "exec", self.namespace]


@dataclass
class Network:
    prefix: str  # of every namespace, link and bridge name made (at most 9 characters)
    second_octet: int
    hosts: dict[str, Host] = field(default_factory=dict)
    bridges: dict[str, str] = field(default_factory=dict)  # network -> bridge name

    @classmethod
    def create(cls, *, hosts: dict[str, tuple[str, ...]]) -> Network:
        """Make ``hosts`` (name -> the networks it is on), in this order; on failure whatever
        was made is removed again."""
        why = namespaces_unavailable()
        if why is not None:
            raise NamespacesUnavailable(why)
        net = cls(prefix=f"pbr{os.getpid() % 100000:05x}"[:9], second_octet=_free_second_octet())
        try:
            for network in sorted({n for networks in hosts.values() for n in networks}):
                net._bridge_add(network)
            for index, (name, networks) in enumerate(hosts.items(), start=10):
                net._host_add(name, index=index, networks=networks)
        except BaseException:
            net.destroy()
            raise
        return net

    # --- addresses -----------------------------------------------------------------------

    def root_address(self, network: str) -> str:
        """The root namespace's address on ``network``: where the test's servers listen."""
        return f"10.{self.second_octet}.{NETWORKS.index(network) + 1}.1"

    def address(self, host: str, network: str = "front") -> str:
        return f"10.{self.second_octet}.{NETWORKS.index(network) + 1}.{self.hosts[host].index}"

    def subnet(self, network: str) -> str:
        return f"10.{self.second_octet}.{NETWORKS.index(network) + 1}.0/24"

    # --- faults --------------------------------------------------------------------------

    def cut(self, host: str, network: str) -> None:
        """Take ``host``'s link on ``network`` down at the bridge's end: its packets are dropped."""
        _ip("link", "set", self.hosts[host].links[network], "down")

    def mend(self, host: str, network: str) -> None:
        _ip("link", "set", self.hosts[host].links[network], "up")

    # --- making and removing ---------------------------------------------------------------

    def _bridge_add(self, network: str) -> None:
        bridge = f"{self.prefix}{network[0]}"
        _ip("link", "add", bridge, "type", "bridge")
        self.bridges[network] = bridge
        _ip("addr", "add", f"{self.root_address(network)}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")

    def _host_add(self, name: str, *, index: int, networks: tuple[str, ...]) -> None:
        namespace = f"{self.prefix}-{name}"
        _ip("netns", "add", namespace)
        host = Host(name=name, namespace=namespace, index=index)
        self.hosts[name] = host
        _ip("-n", namespace, "link", "set", "lo", "up")
        for network in networks:
            outer = f"{self.prefix}{index}{network[0]}"
            _ip("link", "add", outer, "type", "veth", "peer", "name", network, "netns", namespace)
            host.links[network] = outer
            _ip("link", "set", outer, "master", self.bridges[network])
            _ip("link", "set", outer, "up")
            _ip("-n", namespace, "addr", "add", f"{self.address(name, network)}/24", "dev", network)
            _ip("-n", namespace, "link", "set", network, "up")

    def destroy(self) -> None:
        """Remove every namespace (with its ends of the links), link and bridge made."""
        for host in self.hosts.values():
            _ip("netns", "del", host.namespace, check=False)
            for outer in host.links.values():
                _ip("link", "del", outer, check=False)  # gone with its peer, normally
        for bridge in self.bridges.values():
            _ip("link", "del", bridge, check=False)
        self.hosts.clear()
        self.bridges.clear()


def _free_second_octet() -> int:
    """A second octet ``n`` such that nothing on this machine has an address in 10.n.0.0/16."""
    used = _ip("-4", "-o", "addr", "show").stdout
    taken = set()
    for line in used.splitlines():
        parts = line.split()
        if "inet" in parts:
            with contextlib.suppress(ValueError):
                address = ipaddress.ip_interface(parts[parts.index("inet") + 1])
                if address.ip in ipaddress.ip_network("10.0.0.0/8"):
                    taken.add(int(str(address.ip).split(".")[1]))
    candidates = [n for n in range(100, 250) if n not in taken]
    if not candidates:
        raise RuntimeError("no free 10.n.0.0/16 for the test's networks")
    return random.choice(candidates)
