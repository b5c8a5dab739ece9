"""Checks that a Debezium snapshot kept each key's order (lab slot-lost, scripts/failure-lab.sh)."""
import collections, json, sys
kind = dict(line.split() for line in open(sys.argv[2]) if line.strip())
seen = collections.defaultdict(list)
for m in json.load(open(sys.argv[1])):  # partition by partition, in offset order
    if kind.get(m["id"]) not in seen[m["key"]]:
        seen[m["key"]].append(kind.get(m["id"]))
bad = [k for k, order in seen.items() if order[:2] != ["First", "Second"]]
print(f"lab: {len(seen)} keys, {len(bad)} with their second event first" + (f": {bad[:5]}" if bad else ""))
sys.exit(1 if bad or len(seen) != 50 else 0)
