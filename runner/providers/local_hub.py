"""The hub of one cluster job's private network: forwards Ethernet frames between its VMs' unix sockets, nothing else.

Run as `python3 -m runner.providers.local_hub RECORD` (local_net.attach starts it). It takes frames only from the
sockets vm<K>.sock of the job's own socket folder (others are dropped), learns which MAC is behind which socket,
sends a frame to the one socket of a known unicast MAC and floods the rest to every other socket of the folder.
Every 2 s it looks at the record: once the job's VMs have all ended (or none came), it removes the reservation and
the sockets, and exits.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time
from pathlib import Path

from runner.providers import local_net

FRAME = 65536
CHECK = 2.0


class Hub:
    """A learning switch over unix datagram sockets: the hub's socket and the job's vm<K>.sock peers."""

    def __init__(self, sockets: Path) -> None:
        self.sockets = sockets
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        hub = sockets / "hub.sock"
        hub.unlink(missing_ok=True)
        self.sock.bind(str(hub))
        self.sock.setblocking(False)
        self.macs: dict[bytes, str] = {}
        self.dropped = 0

    def member(self, sender: object) -> bool:
        """Whether a frame's sender is a VM socket of this job's folder."""
        if not isinstance(sender, str) or not sender:
            return False
        path = Path(sender)
        return path.parent == self.sockets and bool(local_net.VM_SOCKET_RE.match(path.name))

    def peers(self) -> list[str]:
        return sorted(str(p) for p in self.sockets.iterdir() if local_net.VM_SOCKET_RE.match(p.name))

    def forward(self, frame: bytes, sender: object) -> list[str]:
        """Where one frame goes (sent there); a frame from outside the job, or too short, goes nowhere."""
        if not self.member(sender) or len(frame) < 14:
            self.dropped += 1
            return []
        src, dst = frame[6:12], frame[0:6]
        if not src[0] & 1:
            self.macs[src] = str(sender)
        known = self.macs.get(dst) if not dst[0] & 1 else None
        targets = [known] if known and known != sender else [p for p in self.peers() if p != sender]
        for target in targets:
            try:
                self.sock.sendto(frame, target)
            except OSError:  # a VM gone or not up yet, or its queue full: the frame is lost, as on a wire
                pass
        return targets

    def pump(self, timeout: float) -> int:
        """Forward the frames that arrive within `timeout` seconds; how many came."""
        n = 0
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.sock], [], [], left)[0]:
                break
            while True:
                try:
                    frame, sender = self.sock.recvfrom(FRAME)
                except BlockingIOError:
                    break
                self.forward(frame, sender)
                n += 1
        return n


def over(record: Path) -> bool:
    """Whether the job's network is done with (its record gone, or its VMs all ended); then it is released."""
    with local_net.locked():
        data = local_net.read(record)
        hub = data.get("hub") if data else None
        if data is None or not isinstance(hub, dict) or hub.get("pid") != os.getpid():
            return True  # released already, or another hub serves it (this one's launch failed)
        if local_net.unused(data, time.time()):
            local_net.release(record, data)
            return True
        return False


def main(argv: list[str]) -> int:
    record = Path(argv[0])
    data = local_net.read(record)
    if data is None:
        print(f"local_hub: {record} is not a network record", file=sys.stderr)
        return 2
    hub = Hub(Path(data["sockets"]))
    print(f"local_hub: {data['prefix']}.0/24 over {hub.sockets}", flush=True)
    while True:
        hub.pump(CHECK)
        if over(record):
            print(f"local_hub: the job's VMs have ended; {hub.dropped} frames from outside the job dropped", flush=True)
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
