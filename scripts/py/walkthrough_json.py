"""What the walkthrough (scripts/walkthrough) reads out of an HTTP answer's JSON body.

    walkthrough_json.py get FILE PATH   a value: PATH is dot-separated keys, [n] indexes, and
                                        [key=value] picks the first array element whose key
                                        equals value; objects and arrays print as JSON, null
                                        as empty; exit 1 when the path or the JSON is not there
    walkthrough_json.py pretty FILE     the body indented, or as it is when it is not JSON
    walkthrough_json.py line-sum FILE   the sum of an order's items' line_total_cents
    walkthrough_json.py status FILE     the relay's status page, three recent events a database
"""

import json
import re
import sys


def get(path, selector):
    try:
        with open(path) as f:
            d = json.load(f)
        for part in re.findall(r"\[[^\]]*\]|[^.\[\]]+", selector):
            if part.startswith("["):
                sel = part[1:-1]
                if "=" in sel:
                    k, v = sel.split("=", 1)
                    d = next(x for x in d if isinstance(x, dict) and str(x.get(k)) == v)
                else:
                    d = d[int(sel)]
            else:
                d = d[part]
    except Exception:
        sys.exit(1)
    if isinstance(d, (dict, list)):
        print(json.dumps(d))
    elif d is None:
        print("")
    elif isinstance(d, bool):
        print("true" if d else "false")
    else:
        print(d)


def pretty(path):
    raw = open(path, encoding="utf-8", errors="replace").read()
    try:
        print(json.dumps(json.loads(raw), indent=2, ensure_ascii=False))
    except ValueError:
        print(raw if raw else "(empty body)")


def line_sum(path):
    order = json.load(open(path))
    print(sum(int(i["line_total_cents"]) for i in order["items"]))


def status(path):
    d = json.load(open(path))
    for db in d["databases"]:
        db["recent"] = db["recent"][:3]
    print(json.dumps(d, indent=2))


def main():
    command, args = sys.argv[1], sys.argv[2:]
    {"get": get, "pretty": pretty, "line-sum": line_sum, "status": status}[command](*args)


if __name__ == "__main__":
    main()
