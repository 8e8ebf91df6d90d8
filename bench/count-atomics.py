#!/usr/bin/env python3
"""Atomic read-modify-writes per request, by function, from a callgrind profile.

    bench/count-atomics.py CALLGRIND_OUT BINARY REQUESTS

Run by `bench/instructions --atomics`, whose profile has per-instruction counts
(`--dump-instr=yes`). A lock-prefixed instruction, or an xchg with memory, costs about
twenty cycles, more when another core wrote the line last, yet callgrind counts it as one
instruction like any other: this finds them in the binary (objdump) and adds up how often
each ran. nginx's hot path has none; ours has tokio's wakers, locks and reference counts.
"""

import collections
import re
import subprocess
import sys


def executions(profile, binary):
    """Executions of each instruction address of `binary`, and the function it is in.

    Callgrind's format compresses names (`fn=(12) name` once, `fn=(12)` after) and
    positions (`+3`, `-8` and `*` relative to the previous one); a cost line right after
    `calls=` is a call's inclusive cost, not the instruction's own.
    """
    names = {}
    counts = collections.Counter()
    function_at = {}
    obj = function = None
    address = 0
    call_cost_next = False

    def name(table, text):
        match = re.match(r"\((\d+)\)(?: (.*))?", text)
        if not match:
            return text
        if match.group(2):
            names[(table, match.group(1))] = match.group(2)
        return names.get((table, match.group(1)), text)

    for line in open(profile):
        line = line.rstrip("\n")
        key, _, value = line.partition("=")
        if key in ("ob", "cob"):
            resolved = name("ob", value)
            if key == "ob":
                obj = resolved
        elif key in ("fn", "cfn"):
            resolved = name("fn", value)
            if key == "fn":
                function = resolved
        elif key in ("fl", "fi", "fe", "cfi", "cfl"):
            name("fl", value)
        elif key == "calls":
            call_cost_next = True
        elif line[:1] in "0123456789+-*" and line:
            fields = line.split()
            position = fields[0]
            if position.startswith("0x"):
                address = int(position, 16)
            elif position[0] in "+-":
                step = int(position[1:], 0)
                address += step if position[0] == "+" else -step
            if call_cost_next:
                call_cost_next = False
                continue
            if len(fields) >= 3 and obj and obj.endswith(binary):
                counts[address] += int(fields[2])
                function_at[address] = function
    return counts, function_at


def atomic_addresses(binary):
    listing = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", binary],
        capture_output=True, text=True, check=True,
    ).stdout
    for line in listing.splitlines():
        match = re.match(r"\s*([0-9a-f]+):\s+(.*)", line)
        if match:
            instruction = match.group(2)
            if instruction.startswith("lock ") or (
                instruction.startswith("xchg") and "(" in instruction
            ):
                yield int(match.group(1), 16)


def main():
    profile, binary, requests = sys.argv[1], sys.argv[2], int(sys.argv[3])
    counts, function_at = executions(profile, binary)
    by_function = collections.Counter()
    for address in atomic_addresses(binary):
        if counts.get(address):
            by_function[function_at[address]] += counts[address]
    total = sum(by_function.values())
    print(f"{total / requests:.1f} atomic read-modify-writes per request, by function:")
    for function, count in by_function.most_common(30):
        print(f"{count / requests:7.2f}  {function}")


if __name__ == "__main__":
    main()
