"""The lock files (locks/*.txt) against this Python and what it has installed; used by the Makefile and .ci/run.

    check_lock.py platform LOCK          is this Python the one LOCK was made for? (exit 2 with the ways out if not)
    check_lock.py verify LOCK [--warn]   does every package of LOCK have its locked version here? (exit 1 if not)
    check_lock.py diff LOCK OTHER        the versions OTHER (e.g. the newest, `make test-latest`) has that LOCK has not
    check_lock.py pin LOCK NAME          NAME's line for a requirements file: NAME==VERSION as locked

Standard library only: `platform` and `diff` run with the Python that makes the environment, before anything is
installed in it. A lock's header names its target in two lines the Makefile writes: `# lock-python: 3.11` and
`# lock-platform: x86_64-manylinux_2_28` (uv's --python-version and --python-platform).
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
from importlib import metadata

# The packages printed by `verify` whatever happens: the ones whose releases change the project's behaviour most.
KEY_PACKAGES = ("optuna", "ray", "torch", "transformers")
# Installed in every environment but never locked: the installer, the build backend and this package itself.
NOT_LOCKED = {"pip", "setuptools", "wheel", "tune-distill"}
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;\\]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str) -> tuple[dict[str, str], dict[str, str]]:
    """Return (header keys, {normalized name: version}) of a requirements file written by `uv pip compile`."""
    header: dict[str, str] = {}
    pins: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        key = re.match(r"^#\s*(lock-[a-z]+):\s*(\S+)", line)
        if key:
            header[key.group(1)] = key.group(2)
            continue
        if not line or line.startswith(("#", "-")):
            continue
        match = REQUIREMENT.match(line)
        if not match:
            raise SystemExit(f"{path}: cannot read the line {line[:80]!r}: every package must be pinned with ==")
        marker = line.split(";", 1)[1].split(" --hash", 1)[0].strip() if ";" in line else ""
        if marker and not marker_holds(marker):
            continue
        pins[normalize(match.group(1))] = match.group(3)
    return header, pins


def marker_holds(marker: str) -> bool:
    try:
        from packaging.markers import Marker
    except ImportError:  # a lock made for one platform has no markers; if one has, count its line
        return True
    return Marker(marker).evaluate()


def same_version(a: str, b: str) -> bool:
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:
        return a.strip().lower() == b.strip().lower()
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a.strip().lower() == b.strip().lower()


def describe_python() -> str:
    libc, libc_version = platform.libc_ver()
    libc_text = f", {libc} {libc_version}" if libc else ""
    return (
        f"{platform.python_implementation()} {platform.python_version()} on {platform.system()} "
        f"{platform.machine()}{libc_text}"
    )


def check_platform(lock: str) -> int:
    header, _ = read_lock(lock)
    want_python = header.get("lock-python")
    want_platform = header.get("lock-platform")
    if not want_python or not want_platform:
        raise SystemExit(
            f"{lock}: no '# lock-python:' / '# lock-platform:' lines in its header; remake it with `make lock`"
        )
    arch, _, tag = want_platform.partition("-")
    glibc = re.fullmatch(r"manylinux_(\d+)_(\d+)", tag)
    want_glibc = (int(glibc.group(1)), int(glibc.group(2))) if glibc else None
    problems = []
    if platform.python_implementation() != "CPython" or ".".join(platform.python_version_tuple()[:2]) != want_python:
        problems.append("Python")
    if not sys.platform.startswith("linux") or platform.machine() != arch:
        problems.append("platform")
    elif want_glibc:
        libc, libc_version = platform.libc_ver()
        have = tuple(int(p) for p in re.findall(r"\d+", libc_version)[:2]) if libc == "glibc" else ()
        if len(have) < 2 or have < want_glibc:
            problems.append("C library")
    if not problems:
        return 0
    verb = "differs" if len(problems) == 1 else "differ"
    glibc_text = f", glibc {want_glibc[0]}.{want_glibc[1]} or newer" if want_glibc else ""
    print(
        f"{lock} is for CPython {want_python} on Linux {arch}{glibc_text};\n"
        f"this Python ({sys.executable}) is {describe_python()}: {' and '.join(problems)} {verb}.\n"
        "Ways out:\n"
        f"  - a Python {want_python}: make ... BASE_PYTHON=python{want_python} (first remove the project's .venv if\n"
        "    it was made with another Python);\n"
        "  - the untested, unlocked way: make and activate a virtual environment of your own, then\n"
        "    pip install torch && pip install -e '.[test]'; make uses an active environment that imports the package\n"
        "    as it is, and says so;\n"
        f"  - another Python version on Linux {arch}: make lock LOCK_PYTHON=3.x LOCKS=<a folder of your own>, then\n"
        "    make test LOCKS=<that folder>: locks that no one has tested yet.",
        file=sys.stderr,
    )
    return 2


def verify(lock: str, warn: bool) -> int:
    _, pins = read_lock(lock)
    installed: dict[str, str | None] = {}
    for name in pins:
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed[name] = None
    wrong = {name: have for name, have in installed.items() if have is None or not same_version(have, pins[name])}
    width = max(len(name) for name in KEY_PACKAGES)
    for name in KEY_PACKAGES:
        if name in pins:
            have = installed[name] or "(not installed)"
            print(f"  {name:<{width}}  {have:<12}  {lock}: {pins[name]}")
    names = {normalize(d.metadata["Name"]) for d in metadata.distributions() if d.metadata["Name"]}
    extra = sorted(names - set(pins) - NOT_LOCKED)
    if extra:
        print(f"  also installed, not in {lock}: {' '.join(extra)}")
    if not wrong:
        print(f"{sys.prefix}: all {len(pins)} packages of {lock} at their locked versions")
        return 0
    level = "WARNING" if warn else "ERROR"
    print(f"{level}: {len(wrong)} of the {len(pins)} packages of {lock} differ in {sys.prefix}:", file=sys.stderr)
    for name, have in sorted(wrong.items()):
        print(f"  {name}: {have or 'not installed'}, lock {pins[name]}", file=sys.stderr)
    if warn:
        return 0
    print(
        "This environment is not the tested one. Make it again from the lock: remove it and run `make env` (for the\n"
        "project's own: rm -rf .venv && make env).",
        file=sys.stderr,
    )
    return 1


def diff(lock: str, other: str) -> int:
    _, old = read_lock(lock)
    _, new = read_lock(other)
    changed = sorted(name for name in set(old) & set(new) if not same_version(old[name], new[name]))
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    for name in changed:
        print(f"  {name}: lock {old[name]} -> {new[name]}")
    for name in added:
        print(f"  {name}: not in the lock -> {new[name]}")
    for name in removed:
        print(f"  {name}: lock {old[name]} -> gone")
    print(
        f"{other}: {len(changed)} of {len(new)} packages at other versions than {lock}, {len(added)} new, "
        f"{len(removed)} gone"
    )
    return 0


def pin(lock: str, name: str) -> int:
    _, pins = read_lock(lock)
    if normalize(name) not in pins:
        raise SystemExit(f"{lock}: no {name}")
    print(f"{name}=={pins[normalize(name)]}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("platform").add_argument("lock")
    verify_parser = commands.add_parser("verify")
    verify_parser.add_argument("lock")
    verify_parser.add_argument("--warn", action="store_true", help="report differences but exit 0")
    diff_parser = commands.add_parser("diff")
    diff_parser.add_argument("lock")
    diff_parser.add_argument("other")
    pin_parser = commands.add_parser("pin")
    pin_parser.add_argument("lock")
    pin_parser.add_argument("name")
    args = parser.parse_args()
    if args.command == "platform":
        return check_platform(args.lock)
    if args.command == "verify":
        return verify(args.lock, args.warn)
    if args.command == "diff":
        return diff(args.lock, args.other)
    return pin(args.lock, args.name)


if __name__ == "__main__":
    sys.exit(main())
