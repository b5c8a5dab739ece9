# shellcheck shell=bash
# scripts/apt.sh — sourced, not run: how the scripts that install what they need from Debian's
# packages the first time (scripts/stack, scripts/diagrams, scripts/flow-page) do it, written
# once. The script that sources it defines `die`.

# as_root CMD... — runs CMD as root: directly when we are root, else through passwordless sudo.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    die "need root to run: $* (not root and no sudo)"
  fi
}

# apt_install [--with-recommends] PKG... — installs the packages, refreshing apt's package lists
# first only when apt does not know them (a fresh machine). Only what they depend on, unless
# --with-recommends (a browser wants the fonts it recommends).
apt_install() {
  local install=(apt-get install -y -qq --no-install-recommends)
  if [[ $1 == --with-recommends ]]; then
    install=(apt-get install -y -qq)
    shift
  fi
  command -v apt-get >/dev/null 2>&1 || die "$* missing, and apt-get is not available to install it"
  if ! apt-cache show "$@" >/dev/null 2>&1; then
    as_root apt-get update -qq
  fi
  as_root env DEBIAN_FRONTEND=noninteractive "${install[@]}" "$@" >/dev/null
}
