#!/usr/bin/python3
"""Run a command inside the sandbox a systemd unit's [Service] section describes, where systemd is not PID 1.

tests/engine/test_systemd_unit.py uses it to run the real `moorage serve` under systemd/moorage.service's
hardening, so that a setting which breaks psutil, the Docker socket or Python itself fails a test rather than a
deployment. Run as root with Debian's python3 and python3-seccomp:

    unit-sandbox.py describe UNIT                JSON: the [Service] lines, and the keys this script applies
    unit-sandbox.py run UNIT --state-dir DIR --logs-dir DIR [--leave KEY]... -- COMMAND...

`run` refuses a key it does not apply unless the caller names it with --leave (the caller applies it, or it
cannot be reproduced without a service manager), and a value it does not reproduce, so a new hardening line
never goes untried silently. DIR stand in for /var/lib/NAME and /var/log/NAME, which belong to the host. Each
step execs the next, keeping the pid: `unshare` (mount and UTS namespaces), this script as root (the mounts),
`setpriv` (a dynamic uid, the unit's groups, no capabilities, no_new_privs), this script as that uid (umask
and the seccomp filters systemd would load), then COMMAND: the caller's child pid is the command's main pid.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import grp
import json
import os
import pwd
import random
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import seccomp

Lines = list[tuple[str, str]]

# The keys this script reproduces; build_mounts, run and seccomp_filters read their values.
APPLIED = (
    "DynamicUser", "SupplementaryGroups", "StateDirectory", "StateDirectoryMode", "LogsDirectory",
    "LogsDirectoryMode", "UMask", "NoNewPrivileges", "CapabilityBoundingSet", "ProtectSystem", "ProtectHome",
    "PrivateTmp", "PrivateMounts", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules",
    "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname", "ProtectProc",
    "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
    "MemoryDenyWriteExecute", "SystemCallArchitectures", "SystemCallFilter",
)  # fmt: skip
DYNAMIC_IDS = range(61184, 65520)  # systemd's range for DynamicUser= ids
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSED_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC")  # the caller plays the service manager for these
# ProtectKernelTunables= makes these read-only (systemd's list, where they exist).
KERNEL_TUNABLES = (
    "/proc/acpi", "/proc/apm", "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/latency_stats",
    "/proc/sys", "/proc/sysrq-trigger", "/proc/timer_stats", "/sys",
)  # fmt: skip
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")  # what PrivateDevices= keeps
CLONE_NEW = (0x02000000, 0x08000000, 0x00020000, 0x40000000, 0x20000000, 0x10000000, 0x04000000)
# Syscalls each setting denies with EPERM, beside what it does to mounts and capabilities.
DENIED = (
    ("ProtectClock", "@clock"), ("ProtectKernelModules", "@module"), ("ProtectKernelLogs", "syslog"),
    ("ProtectHostname", "sethostname setdomainname"), ("PrivateDevices", "@raw-io"),
)  # fmt: skip


def service_section(unit: Path) -> Lines:
    """The [Service] lines as (key, value) pairs, in order (a key may repeat)."""
    lines: Lines = []
    section = None
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            lines.append((key.strip(), value.strip()))
    return lines


def values(lines: Lines, key: str) -> list[str]:
    return [value for name, value in lines if name == key]


def one(lines: Lines, key: str, default: str = "") -> str:
    found = values(lines, key)
    return found[-1] if found else default


def yes(lines: Lines, key: str) -> bool:
    return one(lines, key).lower() in ("yes", "true", "1", "on")


def expect(lines: Lines, key: str, *supported: str) -> str:
    """The key's value, refused unless this script reproduces that value: a different one is not tried."""
    value = one(lines, key)
    if value not in supported:
        raise SystemExit(f"unit-sandbox: {key}={value} is not reproduced (only {' or '.join(supported)})")
    return value


# --- as root, in the new namespaces: the mounts ------------------------------------------------------------------


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def under(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def remount(option: str, roots: Iterable[str], skip: Iterable[str] = ()) -> None:
    """Every mount at or below the roots `ro` or `rw`, per mount point: the file systems stay as they are."""
    roots, skip = list(roots), list(skip)
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4].encode().decode("unicode_escape") for line in info]
    for point in dict.fromkeys(points):
        if under(point, roots) and not under(point, skip):
            done = subprocess.run(["mount", "-o", f"remount,bind,{option}", point], capture_output=True, text=True)
            # The engine unmounts a container's root as it goes: such a mount is no longer there to change.
            if done.returncode and os.path.ismount(point):
                raise SystemExit(f"unit-sandbox: cannot make {point} {option}: {done.stderr.strip()}")


class Scratch:
    """A tmpfs for what is bound from it (inaccessible nodes, the new /dev), detached once the view is built."""

    def __init__(self, path: str) -> None:
        self.path = path
        mount("-t", "tmpfs", "-o", "mode=0700", "tmpfs", path)
        self.dead_dir = f"{path}/dead-dir"
        self.dead_file = f"{path}/dead-file"
        os.mkdir(self.dead_dir, 0)
        os.close(os.open(self.dead_file, os.O_CREAT | os.O_WRONLY, 0))

    def hide(self, paths: Iterable[str]) -> None:
        """What systemd makes inaccessible: an empty node nobody may open, bound over the path, read-only."""
        for path in filter(os.path.lexists, paths):
            mount("--bind", self.dead_dir if os.path.isdir(path) else self.dead_file, path)
            mount("-o", "remount,bind,ro", path)

    def devices(self) -> None:
        """PrivateDevices=: a /dev of its own with the pseudo devices only."""
        dev = f"{self.path}/dev"
        os.mkdir(dev)
        mount("-t", "tmpfs", "-o", "mode=0755,nosuid", "tmpfs", dev)
        for name in DEVICES:
            os.close(os.open(f"{dev}/{name}", os.O_CREAT | os.O_WRONLY, 0o666))
            mount("--bind", f"/dev/{name}", f"{dev}/{name}")
        for name in ("pts", "shm"):
            os.mkdir(f"{dev}/{name}")
        mount("-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620,nosuid,noexec", "devpts", f"{dev}/pts")
        mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", f"{dev}/shm")
        os.symlink("pts/ptmx", f"{dev}/ptmx")
        os.symlink("/proc/self/fd", f"{dev}/fd")
        for index, name in enumerate(("stdin", "stdout", "stderr")):
            os.symlink(f"/proc/self/fd/{index}", f"{dev}/{name}")
        mount("--move", dev, "/dev")

    def detach(self) -> None:
        subprocess.run(["umount", "--lazy", self.path], check=True)


def build_mounts(lines: Lines, writable: list[str]) -> None:
    """The unit's file system view, in place, in an order that keeps each step's sources reachable."""
    if one(lines, "ProtectProc"):
        expect(lines, "ProtectProc", "invisible")
        # A procfs instance of its own: hidepid here leaves the host's /proc as it is.
        mount("-t", "proc", "-o", "nosuid,nodev,noexec,hidepid=invisible", "proc", "/proc")
    scratch = Scratch("/tmp")
    if yes(lines, "PrivateDevices"):
        scratch.devices()
    if one(lines, "ProtectSystem"):
        expect(lines, "ProtectSystem", "strict")
        remount("ro", ["/"], skip=["/proc", "/sys", "/dev", scratch.path])
    if yes(lines, "ProtectKernelTunables"):
        tunables = [path for path in KERNEL_TUNABLES if os.path.exists(path)]
        for path in tunables:
            mount("--rbind", path, path)
        remount("ro", tunables)
    if yes(lines, "ProtectControlGroups"):
        remount("ro", ["/sys/fs/cgroup"])
    if yes(lines, "ProtectKernelModules"):
        scratch.hide(["/lib/modules", "/usr/lib/modules"])
    if yes(lines, "ProtectKernelLogs"):
        scratch.hide(["/proc/kmsg", "/dev/kmsg"])
    if one(lines, "ProtectHome"):
        expect(lines, "ProtectHome", "yes")
        scratch.hide(["/home", "/root", "/run/user"])
    scratch.detach()
    if yes(lines, "PrivateTmp"):
        for path in ("/tmp", "/var/tmp"):
            mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", path)
    for path in writable:
        mount("--bind", path, path)
        remount("rw", [path])


def dynamic_id() -> int:
    """A free id in systemd's DynamicUser= range, for both the user and its group, as systemd does."""
    while True:
        candidate = random.choice(DYNAMIC_IDS)
        try:
            pwd.getpwuid(candidate)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(candidate)
        except KeyError:
            return candidate


def directories(lines: Lines, args: argparse.Namespace) -> list[tuple[Path, str, str]]:
    """(path, its unit key, its environment variable) for each of StateDirectory=/LogsDirectory= the unit sets."""
    dirs = [(args.state_dir, "StateDirectory", "STATE_DIRECTORY"), (args.logs_dir, "LogsDirectory", "LOGS_DIRECTORY")]
    return [(path, key, variable) for path, key, variable in dirs if one(lines, key)]


def own_directory(path: Path, uid: int, mode: str) -> None:
    """As systemd does for StateDirectory=/LogsDirectory=: owned by the service's user, with the unit's mode."""
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, uid, uid, follow_symlinks=False)
    path.chmod(int(mode, 8))


def run(args: argparse.Namespace) -> None:
    lines = service_section(args.unit)
    unknown = sorted({key for key, _ in lines} - set(APPLIED) - set(args.leave))
    if unknown:
        raise SystemExit(f"unit-sandbox: {args.unit} sets {', '.join(unknown)}, which this script does not apply")
    for key in ("DynamicUser", "NoNewPrivileges", "PrivateMounts"):
        expect(lines, key, "yes")
    expect(lines, "CapabilityBoundingSet", "")
    expect(lines, "SystemCallArchitectures", "native")
    dirs = directories(lines, args)
    if args.uid is None:
        uid = dynamic_id()
        for path, key, _ in dirs:
            own_directory(path, uid, one(lines, f"{key}Mode", "0755"))
        # unshare without --fork keeps the pid; PrivateMounts=: nothing mounted here reaches the host.
        namespaces = ["--mount", "--propagation", "private"] + (["--uts"] if yes(lines, "ProtectHostname") else [])
        again = [sys.executable, __file__, *sys.argv[1:]]
        again.insert(again.index("--"), f"--uid={uid}")
        os.execvp("unshare", ["unshare", *namespaces, "--", *again])
    build_mounts(lines, [str(path) for path, _, _ in dirs])
    env = {"PATH": DEFAULT_PATH, "HOME": "/", "USER": args.unit.stem, "LOGNAME": args.unit.stem}
    env |= {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env |= {variable: str(path) for path, _, variable in dirs}
    groups = [
        str(grp.getgrnam(name).gr_gid) for value in values(lines, "SupplementaryGroups") for name in value.split()
    ]
    setpriv = ["setpriv", f"--reuid={args.uid}", f"--regid={args.uid}"]
    setpriv += [f"--groups={','.join(groups)}" if groups else "--clear-groups", "--no-new-privs"]
    setpriv += ["--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--"]
    last = [sys.executable, __file__, "seccomp", str(args.unit), "--", *args.command]
    os.execvpe("setpriv", [*setpriv, *last], env)


# --- as the service's user: umask and seccomp ---------------------------------------------------------------------


@cache
def syscall_groups() -> dict[str, list[str]]:
    """systemd's @groups as its own systemd-analyze lists them, so that they match its version."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True).stdout
    groups: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#") and line[0].isspace():
            current.append(line.strip())
    return groups


def syscalls(names: str) -> set[str]:
    """Syscall names and @groups, expanded, keeping those this architecture has (systemd ignores the rest)."""
    found: set[str] = set()
    for name in names.split():
        found |= syscalls(" ".join(syscall_groups()[name])) if name.startswith("@") else {name}
    return {name for name in found if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) >= 0}


def syscall_filter(lines: Lines) -> tuple[bool, set[str]]:
    """SystemCallFilter= lines merged as systemd merges them: (an allow list?, the names). The first line sets
    the kind; a later line of the other kind takes names out. An allow list always has @default."""
    allow: bool | None = None
    names: set[str] = set()
    for value in values(lines, "SystemCallFilter"):
        inverted = value.startswith("~")
        entries = syscalls(value.lstrip("~"))
        if allow is None:
            allow = not inverted
            names = entries | (syscalls("@default") if allow else set())
        elif inverted == allow:
            names -= entries
        else:
            names |= entries
    return bool(allow), names


def other_values(allowed: set[int], arg: int) -> Iterator[list[Any]]:
    """Conditions, one a rule, matching each value of argument `arg` that is not in `allowed`."""
    for value in range(max(allowed)):
        if value not in allowed:
            yield [seccomp.Arg(arg, seccomp.EQ, value)]
    yield [seccomp.Arg(arg, seccomp.GT, max(allowed))]


def seccomp_filters(lines: Lines) -> list[Any]:
    """One filter per setting, stacked as systemd stacks them: the kernel takes the strictest answer. Native
    architecture only (SystemCallArchitectures=native): libseccomp kills a call from any other."""
    filters: list[Any] = []

    def denying(err: int, rules: Iterable[tuple[str, list[Any]]]) -> None:
        filt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        for name, conditions in rules:
            if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) >= 0:
                filt.add_rule(seccomp.ERRNO(err), name, *conditions)
        filters.append(filt)

    if denied := set().union(*(syscalls(names) for key, names in DENIED if yes(lines, key))):
        denying(errno.EPERM, [(name, []) for name in denied])
    if families := one(lines, "RestrictAddressFamilies").split():
        if families[0].startswith("~"):
            raise SystemExit("unit-sandbox: only an allow list of RestrictAddressFamilies= is reproduced")
        allowed = {int(getattr(socket, name)) for name in families}
        denying(errno.EAFNOSUPPORT, [("socket", conditions) for conditions in other_values(allowed, 0)])
    if one(lines, "RestrictNamespaces"):
        expect(lines, "RestrictNamespaces", "yes")
        flags = [("clone", [seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag)]) for flag in CLONE_NEW]
        denying(errno.EPERM, [("unshare", []), ("setns", []), *flags])
        denying(errno.ENOSYS, [("clone3", [])])  # its flags are beyond seccomp: libc falls back to clone
    if yes(lines, "RestrictRealtime"):
        # SCHED_FIFO, SCHED_RR, SCHED_DEADLINE, with or without SCHED_RESET_ON_FORK.
        policy = [[seccomp.Arg(1, seccomp.MASKED_EQ, 0xBFFFFFFF, value)] for value in (1, 2, 6)]
        denying(errno.EPERM, [("sched_setscheduler", conditions) for conditions in policy])
    if yes(lines, "RestrictSUIDSGID"):
        modes = [("chmod", 1), ("fchmod", 1), ("fchmodat", 2), ("mkdir", 1), ("mkdirat", 2), ("mknod", 1)]
        modes += [("mknodat", 2), ("creat", 1)]
        rules: list[tuple[str, list[Any]]] = []
        for bit in (0o4000, 0o2000):
            rules += [(name, [seccomp.Arg(arg, seccomp.MASKED_EQ, bit, bit)]) for name, arg in modes]
            for name, flags, mode in (("open", 1, 2), ("openat", 2, 3)):
                created = seccomp.Arg(flags, seccomp.MASKED_EQ, os.O_CREAT, os.O_CREAT)
                rules.append((name, [created, seccomp.Arg(mode, seccomp.MASKED_EQ, bit, bit)]))
        denying(errno.EPERM, rules)
    if yes(lines, "MemoryDenyWriteExecute"):
        write_exec, exe, shm_exec = 0x2 | 0x4, 0x4, 0o100000  # PROT_WRITE | PROT_EXEC, PROT_EXEC, SHM_EXEC
        rules = [("mmap", [seccomp.Arg(2, seccomp.MASKED_EQ, write_exec, write_exec)])]
        rules += [(name, [seccomp.Arg(2, seccomp.MASKED_EQ, exe, exe)]) for name in ("mprotect", "pkey_mprotect")]
        rules.append(("shmat", [seccomp.Arg(2, seccomp.MASKED_EQ, shm_exec, shm_exec)]))
        denying(errno.EPERM, rules)
    if yes(lines, "LockPersonality"):
        current = ctypes.CDLL(None).personality(ctypes.c_ulong(0xFFFFFFFF)) & 0xFF
        denying(errno.EPERM, [("personality", [seccomp.Arg(0, seccomp.NE, current)])])
    if values(lines, "SystemCallFilter"):
        # Last, as systemd loads it: an allow list without seccomp() would stop the loading of the others.
        allow, names = syscall_filter(lines)
        filt = seccomp.SyscallFilter(defaction=seccomp.KILL_PROCESS if allow else seccomp.ALLOW)
        for name in names:
            filt.add_rule(seccomp.ALLOW if allow else seccomp.KILL_PROCESS, name)
        filters.append(filt)
    return filters


def seccomp_stage(args: argparse.Namespace) -> None:
    lines = service_section(args.unit)
    os.umask(int(one(lines, "UMask", "0022"), 8))
    for filt in seccomp_filters(lines):
        filt.load()
    os.execvp(args.command[0], args.command)


def main() -> None:
    top = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = top.add_subparsers(dest="action", required=True)
    actions.add_parser("describe").add_argument("unit", type=Path)
    runner = actions.add_parser("run")
    runner.add_argument("unit", type=Path)
    runner.add_argument("--state-dir", type=Path, required=True)
    runner.add_argument("--logs-dir", type=Path, required=True)
    runner.add_argument("--leave", action="append", default=[], help="a key the caller applies or cannot reproduce")
    runner.add_argument("--uid", type=int, help=argparse.SUPPRESS)  # set when it runs itself again, namespaced
    runner.add_argument("command", nargs="+")
    last = actions.add_parser("seccomp")
    last.add_argument("unit", type=Path)
    last.add_argument("command", nargs="+")
    args = top.parse_args()
    if args.action == "describe":
        print(json.dumps({"service": service_section(args.unit), "applied": APPLIED}))
    elif args.action == "run":
        if os.geteuid() != 0:
            raise SystemExit("unit-sandbox: run needs root (namespaces, mounts, a dynamic uid)")
        run(args)
    else:
        seccomp_stage(args)


if __name__ == "__main__":
    main()
