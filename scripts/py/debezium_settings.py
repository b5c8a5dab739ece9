"""Checks that the running Debezium relay's settings are deploy/debezium's (scripts/debezium.sh)."""
import json, os, sys
effective = {}
for line in open(sys.argv[1]):
    name, _, kv = line.rstrip("\n").partition(" ")
    key, _, value = kv.partition("=")
    effective.setdefault(name, {})[key] = value
where = {"database.hostname", "database.port", "database.user", "database.password", "database.dbname"}
bad = 0
for path in sys.argv[2:]:
    name = os.path.basename(path)[: -len(".json")]
    shipped = json.load(open(path))
    got = effective.get(name)
    if got is None:
        print(f"{name}: not run by the local stack"); bad = 1; continue
    same = 0
    for key, value in shipped.items():
        if key in where:
            continue
        if got.get(key) == str(value):
            same += 1
        else:
            print(f"{name}: {key} is {got.get(key)!r} locally, {value!r} in deploy/debezium/{name}.json"); bad = 1
    print(f"{name}: {same} of {len(shipped) - len(where & shipped.keys())} settings as in deploy/debezium/{name}.json; "
          f"locally only where the database is: " + ", ".join(f"{k}={got.get(k)}" for k in sorted(where)))
sys.exit(bad)
