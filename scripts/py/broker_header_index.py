"""Creates the local broker's index on message headers in its SQLite file (scripts/stack)."""
import sqlite3, sys, time

path, budget = sys.argv[1], float(sys.argv[2])
deadline = time.time() + budget
last = "table 'header' does not exist yet"
while True:
    try:
        con = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=10)
        try:
            if con.execute("select 1 from sqlite_master where type = 'table' and name = 'header'").fetchone():
                con.execute("create index if not exists header_topition_offset on header(topition, offset_id)")
                con.commit()
                sys.exit(0)
        finally:
            con.close()
    except sqlite3.Error as e:
        last = str(e)
    if time.time() > deadline:
        print(f"stack: broker index: {last}", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.5)
