"""A shaped link between two network namespaces: TUN devices joined by the delay helper, tc tbf per direction.

The mobile device's namespace and the edge server's are joined by one TUN device in each (es_delay creates them,
so they vanish with it); `tc tbf` on each TUN device sets the rate of the direction leaving it (serialisation)
and es_delay adds the one-way delay after it (propagation), as simulator/link.py models a link (STYLE.md rule 11).
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
DEVICE = "es-link"
MOBILE_ADDR, EDGE_ADDR = "10.87.0.1", "10.87.0.2"
MTU_BYTES = 1500
TBF_BUCKET_S = 0.001
"""tbf's bucket holds this long at the rate (at least a packet): a tbf timer that fires late then loses no
capacity (with a one-packet bucket a loaded 2-core host lost 5-7 % of 50 Mbit/s, measured)."""
TBF_PEAK_FACTOR = 1.25
"""tbf's peak rate over its rate (a one-packet second bucket): after idle the bucket's bytes leave at this rate,
not at once, so a transfer gains at most bucket x (1 - 1 / TBF_PEAK_FACTOR) / rate over a link busy for size / rate."""
TBF_LIMIT_BYTES = 16 * 2**20
"""tbf's queue: large enough that TCP never loses a packet to it (the simulator's links do not drop)."""
HELPER_SOURCE = "es_delay.c"


class TestbedUnavailable(EdgesimError):
    """This machine cannot run the testbed (not root, no tc tbf, no TUN, no gcc): what is missing, in one line."""

    __test__ = False  # a name pytest would otherwise try to collect


def _run(args: Sequence[str], what: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command; one line naming what failed and the tool's own first line of error."""
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise EdgesimError(f"testbed: {what} failed: {detail[0] if detail else f'exit {proc.returncode}'}")
    return proc


def missing_requirements() -> Optional[str]:
    """What this machine lacks to shape a link (None: nothing): root, ip, tc, /dev/net/tun, gcc or a built helper."""
    if os.geteuid() != 0:
        return "the testbed needs root (network namespaces and tc); run it as root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the testbed needs '{tool}' (iproute2) on PATH"
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


class ShapedLink:
    """Two namespaces joined by a shaped link for the life of a `with` block (removed however the block ends)."""

    def __init__(self, settings: LinkSettings, role_tag: str = "") -> None:
        self.settings = settings
        tag = f"{PREFIX}{os.getpid()}{('-' + role_tag) if role_tag else ''}"
        self.mobile_ns, self.edge_ns = f"{tag}-m", f"{tag}-e"
        self._helper: Optional[subprocess.Popen] = None
        self._lock = threading.Lock()
        self._previous_handlers: dict[int, object] = {}

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
        s = self.settings
        for ns in (self.mobile_ns, self.edge_ns):
            _run(["ip", "netns", "add", ns], f"creating namespace {ns}")
        self._helper = subprocess.Popen(
            [str(helper), self.mobile_ns, DEVICE, self.edge_ns, DEVICE, str(round(s.up_delay_s * 1e6)),
             str(round(s.down_delay_s * 1e6)), str(s.up_rate_bps), str(s.down_rate_bps)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        ready = self._helper.stdout.readline().strip()
        if ready != "ready":
            err = self._helper.stderr.read().strip().splitlines()
            raise TestbedUnavailable(f"testbed: the delay helper did not start: {err[0] if err else 'no message'}")
        for ns, here, there in ((self.mobile_ns, MOBILE_ADDR, EDGE_ADDR), (self.edge_ns, EDGE_ADDR, MOBILE_ADDR)):
            _run(["ip", "-n", ns, "link", "set", "lo", "up"], f"bringing up lo in {ns}")
            _run(["ip", "-n", ns, "link", "set", DEVICE, "mtu", str(MTU_BYTES), "up"], f"bringing up {DEVICE} in {ns}")
            _run(["ip", "-n", ns, "addr", "add", here, "peer", there, "dev", DEVICE], f"addressing {DEVICE} in {ns}")
            self._sysctl(ns, "net.ipv4.tcp_slow_start_after_idle", "1" if s.slow_start_after_idle else "0")
        self._shape(s.up_rate_bps, s.down_rate_bps, add=True)
        self._rates_bps = (s.up_rate_bps, s.down_rate_bps)
        self._delays_s = (s.up_delay_s, s.down_delay_s)

    def _sysctl(self, ns: str, key: str, value: str) -> None:
        _run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"], f"setting {key} in {ns}")

    def set_rates(self, up_rate_bps: float, down_rate_bps: float) -> None:
        """Set the rate of each direction (a rate trace replays by calling this at the trace's times): one tc call
        per direction whose rate changes."""
        with self._lock:
            self._shape(up_rate_bps, down_rate_bps)
            self._rates_bps = (up_rate_bps, down_rate_bps)
            self._tell_helper()

    def _shape(self, up_rate_bps: float, down_rate_bps: float, add: bool = False) -> None:
        """tc tbf on each side's TUN device: the rate of the direction leaving it (changed where it differs)."""
        now = (None, None) if add else self._rates_bps
        for ns, rate, old in ((self.mobile_ns, up_rate_bps, now[0]), (self.edge_ns, down_rate_bps, now[1])):
            if rate == old:
                continue
            if rate <= 0:
                raise EdgesimError("testbed: tc tbf cannot shape a rate of 0 (a trace's zero-rate step)")
            burst = max(MTU_BYTES, round(rate * TBF_BUCKET_S / 8))
            args = ["ip", "netns", "exec", ns, "tc", "qdisc", "add" if add else "change", "dev", DEVICE, "root",
                    "tbf", "rate", f"{int(round(rate))}bit", "burst", str(burst), "limit", str(TBF_LIMIT_BYTES),
                    "peakrate", f"{int(round(rate * TBF_PEAK_FACTOR))}bit", "mtu", str(MTU_BYTES)]
            proc = _run(args, "shaping the link", check=False)
            if proc.returncode != 0:
                detail = (proc.stderr or "").strip().splitlines()
                raise TestbedUnavailable(f"testbed: tc tbf is not available here ({detail[0] if detail else 'tc failed'})")

    def set_delays(self, up_delay_s: float, down_delay_s: float) -> None:
        """Change the one-way delays (a delay trace)."""
        with self._lock:
            self._delays_s = (up_delay_s, down_delay_s)
            self._tell_helper()

    def _tell_helper(self) -> None:
        """The helper's per-packet serialisation and delay follow the link's current rates and delays."""
        (d_up, d_down), (r_up, r_down) = self._delays_s, self._rates_bps
        self._helper.stdin.write(f"{round(d_up * 1e6)} {round(d_down * 1e6)} {r_up} {r_down}\n")
        self._helper.stdin.flush()

    def close(self) -> None:
        """End the helper and remove both namespaces (idempotent)."""
        if self._helper is not None:
            if self._helper.poll() is None:
                self._helper.terminate()
                try:
                    self._helper.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._helper.kill()
                    self._helper.wait()
            for stream in (self._helper.stdin, self._helper.stdout, self._helper.stderr):
                if stream is not None:
                    stream.close()
            self._helper = None
        for ns in (self.mobile_ns, self.edge_ns):
            _run(["ip", "netns", "del", ns], f"removing namespace {ns}", check=False)
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    # ------------------------------------------------------------------ running processes inside

    def command(self, side: str, args: Sequence[str]) -> list[str]:
        """A command line that runs `args` in the mobile ('mobile') or edge server ('edge') namespace."""
        ns = {"mobile": self.mobile_ns, "edge": self.edge_ns}[side]
        return ["ip", "netns", "exec", ns, *args]


def available_congestion_control() -> list[str]:
    """The congestion control algorithms this kernel has (a testbed socket may use any of them as root)."""
    try:
        return Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().split()
    except OSError:
        return []
