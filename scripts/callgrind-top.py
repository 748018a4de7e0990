#!/usr/bin/env python3
"""The hottest functions of a callgrind profile, by their own instructions and inclusive.

    scripts/callgrind-top.py callgrind.out.1 [--top 25] [--per N]

callgrind_annotate 3.19 shows inclusive costs for the proxy's profiles even with
--inclusive=no, so this reads the file itself. Self cost: the cost lines of a function that do
not follow a `calls=` line. Inclusive cost: self plus the cost of the calls it makes (a
recursive function counts its recursion again). With --per N, every figure is also divided by
N (e.g. the commands of the load: instructions per command).
"""

import argparse
import collections
import re
import sys


def read(path):
    names = {"fn": {}, "file": {}}
    self_cost = collections.Counter()
    call_cost = collections.Counter()
    function = None
    after_call = False
    totals = None

    def resolve(kind, token):
        match = re.match(r"\((\d+)\)(?: (.*))?$", token)
        if not match:
            return token
        if match.group(2) is not None:
            names[kind][match.group(1)] = match.group(2)
        return names[kind].get(match.group(1), token)

    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            line = line.rstrip("\n")
            if line.startswith("fn="):
                function = resolve("fn", line[3:])
                after_call = False
            elif line.startswith("cfn="):
                resolve("fn", line[4:])
            elif line.startswith(("fl=", "fi=", "fe=", "cfi=", "cfl=")):
                resolve("file", line.split("=", 1)[1])
            elif line.startswith("calls="):
                after_call = True
            elif line.startswith(("summary:", "totals:")):
                totals = int(line.split()[1])
            elif line and (line[0].isdigit() or line[0] in "+-*"):
                fields = line.split()
                if len(fields) < 2:
                    continue
                cost = int(fields[1])
                if after_call:
                    call_cost[function] += cost
                    after_call = False
                else:
                    self_cost[function] += cost
    return self_cost, call_cost, totals


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--per", type=float, default=0, help="divide every figure by this")
    args = parser.parse_args()
    self_cost, call_cost, totals = read(args.profile)
    total = totals or sum(self_cost.values())
    per = args.per

    def figure(cost):
        text = f"{cost:>14,} {cost * 100 / max(total, 1):5.1f}%"
        if per:
            text += f" {cost / per:>12,.0f}/cmd"
        return text

    print(f"instructions: {total:,}" + (f" ({total / per:,.0f} per command)" if per else ""))
    print()
    print(f"By their own instructions (top {args.top}):")
    for function, cost in self_cost.most_common(args.top):
        print(f"{figure(cost)}  {function}")
    print()
    print(f"Inclusive (top {args.top}):")
    inclusive = collections.Counter(
        {f: self_cost[f] + call_cost[f] for f in set(self_cost) | set(call_cost)}
    )
    for function, cost in inclusive.most_common(args.top):
        print(f"{figure(cost)}  {function}")


if __name__ == "__main__":
    sys.exit(main())
