"""Checks that every key landed on one partition, whichever relay published it (scripts/debezium.sh)."""
import collections, json, sys
placed = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
by_key = collections.defaultdict(set)
ids = collections.defaultdict(set)
for p in placed:
    by_key[p["key"]].add(p["partition"])
    ids[p["key"]].add(p["id"])
split = {k: sorted(v) for k, v in by_key.items() if len(v) > 1}
short = [k for k in by_key if len(ids[k]) < 2]
print(f"partitions: {len(placed)} messages, {len(by_key)} keys over partitions {sorted({p['partition'] for p in placed})}")
for k, parts in list(split.items())[:10]:
    print(f"  key {k} on partitions {parts}")
if len(by_key) != n or short:
    print(f"partitions: FAILED: {len(by_key)} of {n} keys arrived, {len(short)} of them from one relay only")
    sys.exit(1)
if split:
    print(f"partitions: FAILED: {len(split)} of {n} keys on more than one partition")
    sys.exit(1)
print(f"partitions: every one of the {n} keys, published by our relay and by Debezium, is on one partition")
