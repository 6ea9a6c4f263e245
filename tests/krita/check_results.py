#!/usr/bin/env python3
"""Prints the checks a Krita-side test wrote to JSON and fails unless all passed.

Why this exists: kritarunner and Krita exit with 0 whatever happened inside, so the Krita-side
tests record every check in a JSON file and this script is the real verdict.

Usage: check_results.py RESULTS.json LABEL
"""

import json
import sys


def main() -> int:
    path, label = sys.argv[1], sys.argv[2]
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print("[%s] no results (%s): the Krita side did not run or crashed" % (label, e))
        return 1
    failed = 0
    for c in data.get("checks", []):
        mark = "ok  " if c["ok"] else "FAIL"
        print("[%s] %s %s" % (label, mark, c["name"]))
        if not c["ok"]:
            failed += 1
            for line in str(c.get("detail", "")).splitlines()[:25]:
                print("        " + line)
    if data.get("timings"):
        print("[%s] timings (s): %s" % (label, json.dumps(data["timings"])))
    if not data.get("checks"):
        print("[%s] FAIL: no checks recorded" % label)
        return 1
    if not data.get("done"):
        print("[%s] FAIL: did not run to the end" % label)
        return 1
    print("[%s] %d checks, %d failed" % (label, len(data["checks"]), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
