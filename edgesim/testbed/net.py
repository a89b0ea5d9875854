"""A shaped link between two network namespaces: TUN devices joined by the es_delay helper, which shapes each direction.

Each mobile device's namespace is joined to the edge server's by its own hop (a TUN device in each, created by its
own es_delay helper, so they vanish with it), and, where the scenario has a cloud, the edge server's namespace to
the cloud's by one more (the WAN); the helper serialises each direction's packets at its rate and adds the one-way
delay after (propagation), as simulator/link.py models a link (STYLE.md rule 11; data/es_delay.c says why no qdisc).
Everything this module creates is named with PREFIX and the owner's process id, is removed on exit, on Ctrl-C
and SIGTERM, and, when its owner was killed, at the next start (`remove_leftovers`). Nothing outside its own
namespaces is touched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

from profilers.errors import EdgesimError

PREFIX = "es-"
"""Every namespace this module creates is called es-<owner pid>-<role>; nothing else is touched."""
DEVICE, WAN_DEVICE = "es-link", "es-wan"
MOBILE_ADDR, EDGE_ADDR = "10.87.0.1", "10.87.0.2"
WAN_EDGE_ADDR, CLOUD_ADDR = "10.88.0.1", "10.88.0.2"
MTU_BYTES = 1500
HELPER_SOURCE = "es_delay.c"


class TestbedUnavailable(EdgesimError):
    """This machine cannot run the testbed (not root, no ip, no TUN, no gcc): what is missing, in one line."""

    __test__ = False  # a name pytest would otherwise try to collect


def _run(args: Sequence[str], what: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command; one line naming what failed and the tool's own first line of error."""
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise EdgesimError(f"testbed: {what} failed: {detail[0] if detail else f'exit {proc.returncode}'}")
    return proc


def missing_requirements() -> Optional[str]:
    """What this machine lacks to shape a link (None: nothing): root, ip, /dev/net/tun, gcc or a built helper."""
    if os.geteuid() != 0:
        return "the testbed needs root (network namespaces and TUN devices); run it as root"
    if shutil.which("ip") is None:
        return "the testbed needs 'ip' (iproute2) on PATH"
    if not os.path.exists("/dev/net/tun"):
        return "the testbed needs TUN devices (/dev/net/tun is missing)"
    if shutil.which("gcc") is None and not helper_path().exists():
        return "the testbed builds its delay helper with gcc, which is not on PATH"
    return None


def require() -> None:
    """Raise TestbedUnavailable (one line) when this machine cannot run the testbed."""
    missing = missing_requirements()
    if missing:
        raise TestbedUnavailable(missing)


def cache_dir() -> Path:
    """Where the built helper lives: $EDGESIM_CACHE or ~/.cache/edgesim, then testbed/."""
    base = os.environ.get("EDGESIM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edgesim")
    return Path(base) / "testbed"


def _helper_source() -> bytes:
    return resources.files("edgesim.testbed").joinpath("data").joinpath(HELPER_SOURCE).read_bytes()


def helper_path() -> Path:
    """The built helper for the shipped source (its hash in the name, so an edited source is rebuilt)."""
    return cache_dir() / f"es_delay-{hashlib.sha256(_helper_source()).hexdigest()[:12]}"


def build_helper() -> Path:
    """Build es_delay.c with gcc into the cache folder once per source version; the binary's path."""
    target = helper_path()
    if target.exists():
        return target
    if shutil.which("gcc") is None:
        raise TestbedUnavailable("the testbed builds its delay helper with gcc, which is not on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    src = target.parent / f".{HELPER_SOURCE}.{os.getpid()}"
    tmp = target.parent / f".{target.name}.{os.getpid()}"
    src.write_bytes(_helper_source())
    try:
        _run(["gcc", "-O2", "-Wall", "-o", str(tmp), "-x", "c", str(src)], "building the delay helper (gcc)")
        os.replace(tmp, target)
    finally:
        src.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return target


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(name: str) -> Optional[int]:
    """The owner pid in a name es-<pid>-<role>, None for names that are not ours."""
    parts = name.split("-")
    if len(parts) >= 3 and name.startswith(PREFIX) and parts[1].isdigit():
        return int(parts[1])
    return None


def our_namespaces() -> list[str]:
    """Every network namespace named by this module (any owner)."""
    out = _run(["ip", "netns", "list"], "listing network namespaces").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip() and _owner(line.split()[0]) is not None]


def remove_leftovers() -> list[str]:
    """Remove the namespaces (and kill the helpers) of testbed runs whose owner process is gone; their names."""
    gone = [ns for ns in our_namespaces() if not _alive(_owner(ns))]
    for pid in _helpers_of_dead_owners():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for ns in gone:
        _run(["ip", "netns", "del", ns], f"removing leftover namespace {ns}", check=False)
    return gone


def _helpers_of_dead_owners() -> list[int]:
    """Process ids of es_delay helpers whose namespaces' owner is gone (PR_SET_PDEATHSIG normally ends them)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and os.path.basename(args[0].decode(errors="replace")).startswith("es_delay-") and len(args) > 1:
            owner = _owner(args[1].decode(errors="replace"))
            if owner is not None and not _alive(owner):
                pids.append(int(entry.name))
    return pids


@dataclass(frozen=True)
class LinkSettings:
    """How the testbed's link is shaped: the rate and one-way delay of each direction, and the TCP it carries."""

    up_rate_bps: float
    down_rate_bps: float
    up_delay_s: float
    down_delay_s: float
    congestion_control: str = "cubic"  # set on each socket (TCP_CONGESTION): a namespace may only default to the allowed ones
    slow_start_after_idle: bool = True  # net.ipv4.tcp_slow_start_after_idle in both namespaces

    @property
    def restarts_after_idle(self) -> bool:
        """Whether the link's TCP restarts slow start after idle (what the simulation is told): the sysctl is on and
        the congestion control is not BBR, which Linux exempts (tcp_slow_start_after_idle_check skips a congestion
        control with its own cong_control)."""
        return self.slow_start_after_idle and not self.congestion_control.startswith("bbr")


def host_congestion_control() -> str:
    """The host's default TCP congestion control (what a testbed run uses unless told otherwise)."""
    try:
        return Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    except OSError:
        return "cubic"


def host_slow_start_after_idle() -> bool:
    """This host's net.ipv4.tcp_slow_start_after_idle (Linux's default, 1, where it cannot be read)."""
    try:
        return Path("/proc/sys/net/ipv4/tcp_slow_start_after_idle").read_text().strip() != "0"
    except OSError:
        return True


def uplink_addresses(mobile: int) -> tuple[str, str]:
    """(mobile device, edge server) addresses of mobile device k's hop (k = 0: MOBILE_ADDR, EDGE_ADDR)."""
    return f"10.87.{mobile}.1", f"10.87.{mobile}.2"


def _check_rates(rates_bps: tuple[float, float]) -> None:
    """One line where a hop's rate is not above 0 (es_delay cannot carry an outage: replay.check_replayable)."""
    if min(rates_bps) <= 0:
        raise EdgesimError(f"testbed: a link's rate must be above 0 bit/s, not {min(rates_bps):g}")


@dataclass
class Hop:
    """One shaped hop between two namespaces: a TUN device in each, its own es_delay helper, a rate and a one-way
    delay per direction (a to b, b to a)."""

    a_ns: str
    a_dev: str
    a_addr: str
    b_ns: str
    b_dev: str
    b_addr: str
    rates_bps: tuple[float, float]
    delays_s: tuple[float, float]
    helper: Optional[subprocess.Popen] = None

    def start(self, helper: Path) -> None:
        """Start the helper (it creates both TUN devices), then address and bring them up."""
        _check_rates(self.rates_bps)
        (d_ab, d_ba), (r_ab, r_ba) = self.delays_s, self.rates_bps
        self.helper = subprocess.Popen(
            [str(helper), self.a_ns, self.a_dev, self.b_ns, self.b_dev, str(round(d_ab * 1e6)), str(round(d_ba * 1e6)),
             str(r_ab), str(r_ba)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if self.helper.stdout.readline().strip() != "ready":
            err = self.helper.stderr.read().strip().splitlines()
            raise TestbedUnavailable(f"testbed: the delay helper did not start: {err[0] if err else 'no message'}")
        for ns, dev, here, there in ((self.a_ns, self.a_dev, self.a_addr, self.b_addr),
                                     (self.b_ns, self.b_dev, self.b_addr, self.a_addr)):
            _run(["ip", "-n", ns, "link", "set", dev, "mtu", str(MTU_BYTES), "up"], f"bringing up {dev} in {ns}")
            _run(["ip", "-n", ns, "addr", "add", here, "peer", there, "dev", dev], f"addressing {dev} in {ns}")

    def set_rates(self, rates_bps: tuple[float, float]) -> None:
        """The hop's rates from now on (the packet being serialised sends the bits it has left at the new rate)."""
        _check_rates(rates_bps)
        self.rates_bps = rates_bps
        self.tell_helper()

    def tell_helper(self) -> None:
        """The helper's per-packet serialisation and delay follow the hop's current rates and delays."""
        (d_ab, d_ba), (r_ab, r_ba) = self.delays_s, self.rates_bps
        self.helper.stdin.write(f"{round(d_ab * 1e6)} {round(d_ba * 1e6)} {r_ab} {r_ba}\n")
        self.helper.stdin.flush()

    def stop(self) -> None:
        """End the helper (its TUN devices go with it); idempotent."""
        if self.helper is None:
            return
        if self.helper.poll() is None:
            self.helper.terminate()
            try:
                self.helper.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.helper.kill()
                self.helper.wait()
        for stream in (self.helper.stdin, self.helper.stdout, self.helper.stderr):
            if stream is not None:
                stream.close()
        self.helper = None


class ShapedLink:
    """The testbed's namespaces joined by shaped hops for the life of a `with` block (removed however it ends): each
    mobile device's to the edge server's, and the edge server's to the cloud's where `wan` is given."""

    def __init__(self, settings: LinkSettings, role_tag: str = "", mobiles: int = 1,
                 wan: Optional[LinkSettings] = None) -> None:
        self.settings = settings
        tag = f"{PREFIX}{os.getpid()}{('-' + role_tag) if role_tag else ''}"
        self.mobile_nss = [f"{tag}-m"] + [f"{tag}-m{k}" for k in range(1, mobiles)]
        self.mobile_ns, self.edge_ns = self.mobile_nss[0], f"{tag}-e"
        self.cloud_ns = f"{tag}-c" if wan is not None else None
        up, down = (settings.up_rate_bps, settings.down_rate_bps), (settings.up_delay_s, settings.down_delay_s)
        self.uplinks = [Hop(ns, DEVICE, uplink_addresses(k)[0], self.edge_ns, DEVICE + (str(k) if k else ""),
                            uplink_addresses(k)[1], up, down) for k, ns in enumerate(self.mobile_nss)]
        self.wan = None if wan is None else Hop(
            self.edge_ns, WAN_DEVICE, WAN_EDGE_ADDR, self.cloud_ns, WAN_DEVICE, CLOUD_ADDR,
            (wan.up_rate_bps, wan.down_rate_bps), (wan.up_delay_s, wan.down_delay_s))
        self._lock = threading.Lock()
        self._previous_handlers: dict[int, object] = {}

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of this link."""
        return [*self.mobile_nss, self.edge_ns, *([self.cloud_ns] if self.cloud_ns else [])]

    @property
    def hops(self) -> list[Hop]:
        """Every hop: the uplinks, then the WAN."""
        return [*self.uplinks, *([self.wan] if self.wan else [])]

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "ShapedLink":
        require()
        remove_leftovers()
        helper = build_helper()
        self._trap_signals()
        try:
            self._create(helper)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _trap_signals(self) -> None:
        """SIGTERM ends the run like Ctrl-C does (KeyboardInterrupt), so `with` removes the namespaces."""
        if threading.current_thread() is not threading.main_thread():
            return

        def interrupt(signum, frame):  # noqa: ARG001
            raise KeyboardInterrupt

        self._previous_handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, interrupt)

    def _create(self, helper: Path) -> None:
        for ns in self.namespaces:
            _run(["ip", "netns", "add", ns], f"creating namespace {ns}")
            _run(["ip", "-n", ns, "link", "set", "lo", "up"], f"bringing up lo in {ns}")
            self._sysctl(ns, "net.ipv4.tcp_slow_start_after_idle", "1" if self.settings.slow_start_after_idle else "0")
        for hop in self.hops:
            hop.start(helper)

    def _sysctl(self, ns: str, key: str, value: str) -> None:
        _run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"], f"setting {key} in {ns}")

    def set_rates(self, up_rate_bps: float, down_rate_bps: float, mobile: Optional[int] = None) -> None:
        """Set the rate of each direction of mobile device k's hop (None: every mobile device's; a rate trace
        replays by calling this at the trace's times): one line to each hop's helper."""
        with self._lock:
            for hop in self.uplinks if mobile is None else [self.uplinks[mobile]]:
                hop.set_rates((up_rate_bps, down_rate_bps))

    def set_delays(self, up_delay_s: float, down_delay_s: float) -> None:
        """Change the one-way delays of every uplink hop."""
        with self._lock:
            for hop in self.uplinks:
                hop.delays_s = (up_delay_s, down_delay_s)
                hop.tell_helper()

    def set_wan(self, rates_bps: tuple[float, float], delays_s: tuple[float, float]) -> None:
        """Set the WAN hop's rates and one-way delays (edge server to cloud, back)."""
        with self._lock:
            self.wan.delays_s = delays_s
            self.wan.set_rates(rates_bps)

    def close(self) -> None:
        """End the helpers and remove every namespace (idempotent)."""
        for hop in self.hops:
            hop.stop()
        for ns in self.namespaces:
            _run(["ip", "netns", "del", ns], f"removing namespace {ns}", check=False)
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    # ------------------------------------------------------------------ running processes inside

    def command(self, side: str, args: Sequence[str], mobile: int = 0) -> list[str]:
        """A command line that runs `args` in mobile device k's namespace ('mobile', k = `mobile`), the edge server's
        ('edge') or the cloud's ('cloud')."""
        ns = {"mobile": self.mobile_nss[mobile], "edge": self.edge_ns, "cloud": self.cloud_ns}[side]
        return ["ip", "netns", "exec", ns, *args]


def available_congestion_control() -> list[str]:
    """The congestion control algorithms this kernel has (a testbed socket may use any of them as root)."""
    try:
        return Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().split()
    except OSError:
        return []
