#!/usr/bin/env python3
"""Convert a moby/containers-format seccomp profile into an OCI `linux.seccomp` object.

Source: podman's default profile, /usr/share/containers/seccomp.json, shipped by Debian's
`golang-github-containers-common` package (Apache-2.0). The moby format carries
`archMap` and per-rule `includes`/`excludes` keyed by capabilities and Go arch names; an
OCI runtime only understands the resolved form. This resolves it the way moby's
`setupSeccomp` does, for one architecture and one capability set (docker's defaults), and
adds docker's clone/clone3 rules for containers without CAP_SYS_ADMIN, so the benchmark
profile exercises SCMP_CMP_MASKED_EQ as docker's own profile does.

Usage: bench/make-seccomp-profile.py [SOURCE] > bench/seccomp-default.json
"""

import json
import sys

# Docker's default capability set (moby oci/caps/defaults.go).
DOCKER_DEFAULT_CAPS = {
    "CAP_" + c
    for c in (
        "CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE "
        "NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP"
    ).split()
}
GO_ARCH = "amd64"
SECCOMP_ARCH = "SCMP_ARCH_X86_64"

# CLONE_NEWNS|CLONE_NEWCGROUP|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET
CLONE_NAMESPACE_FLAGS = 0x7E020000
ENOSYS = 38


def rule_applies(rule, caps):
    """moby's filter: excludes win, then every included cap and one included arch must match."""
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if GO_ARCH in (exc.get("arches") or []):
        return False
    if caps & set(exc.get("caps") or []):
        return False
    if inc.get("arches") and GO_ARCH not in inc["arches"]:
        return False
    if any(c not in caps for c in inc.get("caps") or []):
        return False
    return True


def oci_rule(rule):
    out = {"names": list(rule["names"]), "action": rule["action"]}
    if rule.get("errnoRet") is not None:
        out["errnoRet"] = rule["errnoRet"]
    args = [
        {k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
        for a in rule.get("args") or []
    ]
    if args:
        out["args"] = args
    return out


def docker_clone_rules(syscalls, caps):
    """Without CAP_SYS_ADMIN docker allows clone only without namespace flags, clone3 → ENOSYS."""
    if "CAP_SYS_ADMIN" in caps:
        return syscalls
    for rule in syscalls:
        if rule["action"] == "SCMP_ACT_ALLOW" and "args" not in rule:
            rule["names"] = [n for n in rule["names"] if n not in ("clone", "clone3")]
    mask = {"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    syscalls.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [mask]})
    syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return syscalls


def convert(profile, caps):
    arches = [SECCOMP_ARCH]
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == SECCOMP_ARCH:
            arches += entry.get("subArchitectures") or []
    syscalls = [oci_rule(r) for r in profile["syscalls"] if rule_applies(r, caps)]
    out = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    out["architectures"] = arches
    out["syscalls"] = docker_clone_rules(syscalls, caps)
    return out


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/containers/seccomp.json"
    with open(src) as f:
        profile = json.load(f)
    json.dump(convert(profile, DOCKER_DEFAULT_CAPS), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
