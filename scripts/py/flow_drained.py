"""Whether the shop has drained, from the flow console's /flow.json: no outbox row pending and
no consumer group behind. Prints one line saying what is left; exits 0 when nothing is.

    flow_drained.py FILE
"""

import json
import sys


def main():
    with open(sys.argv[1]) as f:
        flow = json.load(f)
    left = [f"{o['database']}: {o['pending']} pending" for o in flow["outboxes"] if o["pending"]]
    for c in flow["consumers"]:
        if c["lag"] is None:
            left.append(f"{c['group']}: lag unknown ({c['error'] or 'no answer yet'})")
        elif c["lag"]:
            left.append(f"{c['group']}: {c['lag']} behind")
    left += [f"{source}: unavailable" for source in flow["unavailable"]]
    print("; ".join(left) if left else "drained: nothing pending, no consumer group behind")
    sys.exit(1 if left else 0)


if __name__ == "__main__":
    main()
