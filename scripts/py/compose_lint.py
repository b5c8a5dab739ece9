"""Checks the resolved Compose configuration against the repository (scripts/compose-check)."""
import json, pathlib, re, subprocess, sys, tomllib

root = pathlib.Path(sys.argv[1])
config = json.loads(pathlib.Path(sys.argv[2]).read_text())
services = config["services"]
failures = []


def ok(msg):
    print(f"compose-check: ok: {msg}")


def fail(msg):
    failures.append(msg)
    print(f"compose-check: FAIL: {msg}", file=sys.stderr)


def rel(p):
    p = pathlib.Path(p)
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


# --- workspace binaries ---------------------------------------------------------------
workspace = tomllib.loads((root / "Cargo.toml").read_text())
members = workspace["workspace"]["members"]
binaries = {}
for m in members:
    pkg = tomllib.loads((root / m / "Cargo.toml").read_text())["package"]["name"]
    if (root / m / "src" / "main.rs").is_file():
        binaries[pkg] = m

# --- build contexts and Dockerfiles -----------------------------------------------------
dockerfiles = set()
for name, svc in sorted(services.items()):
    build = svc.get("build")
    if not build:
        continue
    ctx = pathlib.Path(build.get("context", "."))
    if not ctx.is_dir():
        fail(f"{name}: build.context {rel(ctx)} is not a directory")
        continue
    df = ctx / build.get("dockerfile", "Dockerfile")
    if not df.is_file():
        fail(f"{name}: Dockerfile {rel(df)} does not exist")
        continue
    dockerfiles.add(df)
    ok(f"{name}: build context {rel(ctx) or '.'} and {rel(df)} exist")

# --- images are pinned --------------------------------------------------------------------
for name, svc in sorted(services.items()):
    image = svc.get("image", "")
    if svc.get("build"):
        continue
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    if not image or not tag or tag == "latest":
        fail(f"{name}: image {image!r} has no pinned tag")
ok("every pulled image has an explicit tag: " + ", ".join(
    sorted({s["image"] for s in services.values() if not s.get("build")})))

# --- bind mounts, env files, configs, secrets ------------------------------------------
for name, svc in sorted(services.items()):
    binds = []
    for v in svc.get("volumes", []):
        if v.get("type") == "bind":
            src = pathlib.Path(v["source"])
            if not src.exists():
                fail(f"{name}: bind mount source {rel(src)} does not exist "
                     "(Docker would create an empty directory there)")
            else:
                ok(f"{name}: bind mount {rel(src)} -> {v['target']} exists")
                binds.append((v["target"].rstrip("/"), src))
    for ef in svc.get("env_file", []) or []:
        path = ef["path"] if isinstance(ef, dict) else ef
        required = ef.get("required", True) if isinstance(ef, dict) else True
        if required and not pathlib.Path(path).is_file():
            fail(f"{name}: env_file {rel(path)} does not exist")
    # A path in entrypoint/command that lives under a bind mount must exist on the host.
    args = (svc.get("entrypoint") or []) + (svc.get("command") or [])
    for arg in args:
        if not isinstance(arg, str) or not arg.startswith("/"):
            continue
        for target, src in binds:
            if arg == target or arg.startswith(target + "/"):
                host = src if arg == target else src / arg[len(target) + 1:]
                if not host.exists():
                    fail(f"{name}: {arg} (from {rel(src)}) does not exist on the host")
                else:
                    ok(f"{name}: runs {arg} = {rel(host)}")
for kind in ("configs", "secrets"):
    for key, item in (config.get(kind) or {}).items():
        if "file" in item and not pathlib.Path(item["file"]).exists():
            fail(f"{kind}.{key}: file {rel(item['file'])} does not exist")

# --- the Rust services: binary, port, health check ------------------------------------
dockerfile_text = "\n".join(p.read_text() for p in dockerfiles)
for name, svc in sorted(services.items()):
    if not svc.get("build"):
        continue
    cmd = svc.get("command") or []
    binary = pathlib.PurePosixPath(cmd[0]).name if cmd else ""
    if binary not in binaries:
        fail(f"{name}: command {cmd} does not name a workspace binary ({', '.join(sorted(binaries))})")
        continue
    if f"target/release/{binary}" not in dockerfile_text:
        fail(f"{name}: the Dockerfile does not copy target/release/{binary}")
    env = svc.get("environment") or {}
    port = env.get("PORT")
    targets = [p.get("target") for p in svc.get("ports", [])]
    if port is None or int(port) not in targets:
        fail(f"{name}: PORT={port} is not among its published container ports {targets}")
    test = " ".join(svc.get("healthcheck", {}).get("test") or [])
    if "/health" not in test:
        fail(f"{name}: no /health healthcheck")
    ok(f"{name}: runs {binary} (built by the Dockerfile), PORT={port} published, healthcheck /health")
# --- consumers run in groups, in Compose as in the local stack and the Procfile -----------
# (`manual` assignment takes every partition and is for one instance only: it would make
# the local stack test something else than what Compose and production deploy.)
for name, svc in sorted(services.items()):
    assignment = (svc.get("environment") or {}).get("KAFKA_CONSUMER_ASSIGNMENT", "group")
    if svc.get("build") and assignment != "group":
        fail(f"{name}: KAFKA_CONSUMER_ASSIGNMENT={assignment}; consumers run in groups")
for local in ("Procfile", "scripts/stack"):
    if "KAFKA_CONSUMER_ASSIGNMENT=manual" in (root / local).read_text():
        fail(f"{local} sets KAFKA_CONSUMER_ASSIGNMENT=manual; consumers run in groups")
ok("consumers run in groups in Compose, the Procfile and scripts/stack")

missing = sorted(set(binaries) - {pathlib.PurePosixPath((s.get("command") or [""])[0]).name
                                 for s in services.values() if s.get("build")})
if missing:
    print(f"compose-check: note: workspace binaries no compose service runs: {missing}")

# --- .dockerignore must not hide build inputs -------------------------------------------
def ignore_patterns():
    f = root / ".dockerignore"
    if not f.is_file():
        return []
    pats = []
    for line in f.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:] if neg else line
        pat = pat.strip("/")
        rx = ""
        i = 0
        while i < len(pat):
            if pat.startswith("**", i):
                rx += ".*"
                i += 2
                if pat.startswith("/", i):
                    rx = rx[:-2] + "(.*/)?"
                    i += 1
            elif pat[i] == "*":
                rx += "[^/]*"
                i += 1
            elif pat[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(pat[i])
                i += 1
        pats.append((re.compile(rx + r"\Z"), neg, line))
    return pats


def ignored(path, pats):
    # As Docker does it: the last pattern that matches the path or one of its parent
    # directories decides; a `!` pattern lets the path back in.
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    hit = None
    for rx, neg, line in pats:
        if any(rx.match(p) for p in prefixes):
            hit = None if neg else line
    return hit


pats = ignore_patterns()
inputs = ["Cargo.toml", "Cargo.lock", ".cargo/config.toml"]
# The services' compile-time query metadata (SQLX_OFFLINE=true in .cargo/config.toml).
inputs += [str(p.relative_to(root)) for p in sorted((root / ".sqlx").glob("*.json"))]
for m in members:
    inputs.append(f"{m}/Cargo.toml")
    # assets/: files a crate compiles in with include_str! (the flow console's page).
    for sub in ("src", "migrations", "build.rs", "assets"):
        if (root / m / sub).exists():
            inputs.append(f"{m}/{sub}")
            if sub == "src":
                inputs += [str(p.relative_to(root)) for p in sorted((root / m / "src").rglob("*.rs"))]
            if sub == "assets":
                inputs += [str(p.relative_to(root)) for p in sorted((root / m / "assets").rglob("*")) if p.is_file()]
            if sub == "migrations":
                inputs += [str(p.relative_to(root)) for p in sorted((root / m / "migrations").glob("*.sql"))]
hidden = [(p, ignored(p, pats)) for p in inputs]
hidden = [(p, why) for p, why in hidden if why]
if hidden:
    for p, why in hidden:
        fail(f".dockerignore pattern {why!r} hides build input {p}")
else:
    ok(f".dockerignore hides none of the {len(inputs)} build inputs (manifests, sources, migrations)")

# --- PostgreSQL databases --------------------------------------------------------------
created = set()
for v in services.get("postgres", {}).get("volumes", []):
    if v.get("type") == "bind" and v["target"].startswith("/docker-entrypoint-initdb.d"):
        src = pathlib.Path(v["source"])
        for f in ([src] if src.is_file() else sorted(src.glob("*.sql"))):
            created |= {m.lower() for m in re.findall(r"(?i)create\s+database\s+\"?(\w+)", f.read_text())}
used = set()
for name, svc in services.items():
    for value in (svc.get("environment") or {}).values():
        for m in re.finditer(r"postgres(?:ql)?://[^,\s]*?@postgres:\d+/(\w+)", str(value)):
            used.add(m.group(1))
if not created:
    fail("postgres: no `create database` found in the init scripts")
elif used - created:
    fail(f"postgres: services use databases {sorted(used - created)} the init scripts do not create")
else:
    ok(f"postgres: init scripts create {sorted(created)}; services use {sorted(used)}")
if "wal_level=logical" not in " ".join(services.get("postgres", {}).get("command") or []):
    fail("postgres: not started with wal_level=logical (Debezium needs it)")

# --- Kafka topics ---------------------------------------------------------------------------
topics_script = root / "deploy/kafka/create-topics.sh"
if topics_script.is_file():
    text = topics_script.read_text()
    want = ["outbox.event.order", "outbox.event.reservation"] + [
        f"{s}.dlq" for s in ("order-service", "inventory-service", "invoice-service")]
    lacking = [t for t in want if t not in text]
    if lacking:
        fail(f"{rel(topics_script)} does not create {lacking}")
    else:
        ok(f"{rel(topics_script)} creates {', '.join(want)}")

# --- Debezium connectors ----------------------------------------------------------------
connector_dir = root / "deploy/debezium"
files = sorted(connector_dir.glob("outbox-*.json"))
if "connect" in services and not files:
    fail("profile debezium: no deploy/debezium/outbox-*.json connector configs")
seen = {"database.dbname": {}, "slot.name": {}, "topic.prefix": {}}
for f in files:
    try:
        c = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        fail(f"{rel(f)}: invalid JSON: {e}")
        continue
    expect = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "plugin.name": "pgoutput",
        "table.include.list": "public.outbox",
        "transforms.outbox.type": "io.debezium.transforms.outbox.EventRouter",
        "transforms.outbox.table.expand.json.payload": "true",
        "value.converter.schemas.enable": "false",
        "database.hostname": "postgres",
    }
    bad = {k: c.get(k) for k, v in expect.items() if c.get(k) != v}
    if bad:
        fail(f"{rel(f)}: unexpected values {bad}")
    if "outbox" not in (c.get("transforms") or "").split(","):
        fail(f"{rel(f)}: transforms does not include outbox")
    for key, where in seen.items():
        v = c.get(key)
        if not v:
            fail(f"{rel(f)}: {key} missing")
        elif v in where:
            fail(f"{rel(f)}: {key}={v} also in {where[v]} (must be unique per connector)")
        else:
            where[v] = rel(f)
    if c.get("database.dbname") not in created:
        fail(f"{rel(f)}: database {c.get('database.dbname')} is not created by the init scripts")
if files:
    dbs = sorted(seen["database.dbname"])
    if created and set(dbs) != created:
        fail(f"Debezium connectors cover {dbs}, the outbox databases are {sorted(created)}")
    ok(f"Debezium connectors {[f.name for f in files]}: one per database {dbs}, unique slots and prefixes")

# --- shell scripts parse -------------------------------------------------------------------
for script in sorted((root / "deploy").rglob("*.sh")):
    r = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{rel(script)}: sh -n: {r.stderr.strip()}")
    else:
        ok(f"{rel(script)}: sh -n")

sys.exit(1 if failures else 0)
