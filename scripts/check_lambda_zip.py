#!/usr/bin/env python3
"""Checks a Lambda deployment zip for the provided.al2023 runtime.

Usage: check_lambda_zip.py ZIP ARCH   (ARCH: arm64 or x86_64)

The zip must hold exactly one file, `bootstrap`, at its root, executable, an ELF64
little-endian executable for ARCH, needing no newer glibc than Amazon Linux 2023's (2.34).
Prints the sizes; exits non-zero with the reason otherwise.
"""
import re
import sys
import zipfile

MACHINES = {"arm64": 0xB7, "x86_64": 0x3E}
AL2023_GLIBC = (2, 34)


def fail(msg):
    print(f"check_lambda_zip: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in MACHINES:
        fail("usage: check_lambda_zip.py ZIP arm64|x86_64")
    path, arch = sys.argv[1], sys.argv[2]
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        if names != ["bootstrap"]:
            fail(f"{path} must hold only `bootstrap` at its root, holds {names}")
        info = z.getinfo("bootstrap")
        mode = info.external_attr >> 16
        if not mode & 0o111:
            fail(f"bootstrap in {path} is not executable (mode {oct(mode)})")
        data = z.read("bootstrap")
    if data[:4] != b"\x7fELF":
        fail("bootstrap is not an ELF file")
    if data[4] != 2 or data[5] != 1:
        fail("bootstrap is not a 64-bit little-endian ELF")
    e_type = int.from_bytes(data[16:18], "little")
    if e_type not in (2, 3):  # EXEC, or DYN (position-independent executable)
        fail(f"bootstrap is not an executable (e_type {e_type})")
    machine = int.from_bytes(data[18:20], "little")
    if machine != MACHINES[arch]:
        fail(f"bootstrap is for ELF machine {machine:#x}, not {arch} ({MACHINES[arch]:#x})")
    needed = [tuple(map(int, v)) for v in re.findall(rb"GLIBC_(\d+)\.(\d+)", data)]
    newest = max(needed, default=(0, 0))
    if newest > AL2023_GLIBC:
        fail(f"bootstrap needs glibc {newest[0]}.{newest[1]}, newer than Amazon Linux 2023's 2.34")
    print(
        f"{path}: bootstrap for {arch}, {len(data)} bytes "
        f"({len(data) / 1048576:.2f} MiB), zip {info.compress_size} bytes, "
        f"glibc needed <= {newest[0]}.{newest[1]}"
    )


main()
