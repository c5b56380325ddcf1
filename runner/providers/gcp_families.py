"""GCE machine families: which boot disk type each takes, and whether it can live-migrate (pure).

From the Compute Engine docs (machine series pages, "Hyperdisk: supported machine series", "live
migration"): the 4th-generation series and later (N4, C4, C4A, C4D, M4, X4, A4, G4, A3 Ultra, bare
metal) take Hyperdisk only, no Persistent Disk; GPU series (A2, A3, A4, G2, G4, N1 with GPUs),
bare metal, H3 and Z3 reject onHostMaintenance=MIGRATE. A family missing here gets TERMINATE, which
every family accepts, and Hyperdisk from the 4th generation on (the newest series take nothing else).
"""

from __future__ import annotations

import re

PD_BALANCED = "pd-balanced"
HYPERDISK_BALANCED = "hyperdisk-balanced"

# family -> (boot disk type, live-migrates)
FAMILIES: dict[str, tuple[str, bool]] = {
    **{f: (PD_BALANCED, True) for f in ("e2", "n1", "n2", "n2d", "t2d", "t2a", "c2", "c2d", "c3", "c3d", "m1", "m3")},
    **{f: (PD_BALANCED, False) for f in ("m2", "h3", "z3", "a2", "a3", "g2")},
    **{f: (HYPERDISK_BALANCED, True) for f in ("n4", "n4d", "n4a", "c4", "c4a", "c4d")},
    **{f: (HYPERDISK_BALANCED, False) for f in ("m4", "x4", "h4d", "a4", "a4x", "g4", "a3-ultragpu",
                                                "c3-metal", "c3d-metal", "c4-metal", "x4-metal")},
}
GEN_RE = re.compile(r"^[a-z]+(\d+)")


def family(machine_type: str) -> str:
    """'c4a-standard-4' -> 'c4a'; the variants that differ from their series: 'a3-ultragpu', 'c3-metal'."""
    parts = machine_type.split("-")
    series = parts[0]
    if parts[-1] == "metal":
        return f"{series}-metal"
    if len(parts) > 1 and f"{series}-{parts[1]}" in FAMILIES:
        return f"{series}-{parts[1]}"
    return series


def boot_disk_type(machine_type: str) -> str:
    """The boot disk type the machine type takes: pd-balanced, or hyperdisk-balanced where PD is not offered."""
    known = FAMILIES.get(family(machine_type))
    if known:
        return known[0]
    gen = GEN_RE.match(machine_type)
    return HYPERDISK_BALANCED if gen and int(gen[1]) >= 4 else PD_BALANCED


def on_host_maintenance(machine_type: str, spot: bool, accelerators: int = 0) -> str:
    """MIGRATE where GCE can live-migrate the VM; TERMINATE for spot, GPUs and families that cannot."""
    known = FAMILIES.get(family(machine_type))
    return "MIGRATE" if known and known[1] and not spot and not accelerators else "TERMINATE"
