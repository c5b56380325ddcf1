"""moto's RunInstances as EC2 answers it: as many instances as there is capacity for, up to MaxCount.

moto starts MinCount instances whatever MaxCount says; EC2 starts up to MaxCount, and fewer (at least MinCount)
when a zone runs short. `install(capacity)` makes the moto server in this process do that, with `capacity`
({zone: instances}, "*" for any zone, None for unlimited) saying how many each call may start; `calls` records
every RunInstances as moto received it (zone, MinCount, MaxCount, ClientToken, UserData). The request on the wire
is untouched. Run `python3 tests/moto_capacity.py -H 127.0.0.1 -p PORT` for a moto server that does the same.
"""

from __future__ import annotations

import base64
import sys


def install(capacity: dict | None = None, calls: list | None = None):
    """Patch moto's RunInstances (in this process); returns a function that undoes it."""
    from moto.ec2.responses.instances import InstanceResponse

    real = InstanceResponse.run_instances
    capacity = {} if capacity is None else capacity

    def run_instances(self):
        get = self._get_param
        zone = get("Placement.AvailabilityZone") or ""
        low, high = int(get("MinCount", if_none="1")), int(get("MaxCount", if_none="1"))
        room = capacity.get(zone, capacity.get("*"))
        count = high if room is None else min(high, room)
        if calls is not None:
            user_data = get("UserData") or ""
            calls.append({"zone": zone, "min": low, "max": high, "token": get("ClientToken"), "placed": max(count, 0),
                          "user_data": base64.b64decode(user_data).decode() if user_data else ""})
        if count < low:
            from moto.ec2.exceptions import EC2ClientError

            raise EC2ClientError("InsufficientInstanceCapacity", f"injected: no capacity for {low} in {zone or 'any zone'}")
        self._get_param = lambda name, *a, **kw: str(count) if name == "MinCount" else get(name, *a, **kw)
        try:
            return real(self)
        finally:
            del self._get_param

    InstanceResponse.run_instances = run_instances
    return lambda: setattr(InstanceResponse, "run_instances", real)


if __name__ == "__main__":
    install()
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
