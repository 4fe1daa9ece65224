#!/usr/bin/env bash
# System packages from Debian: bubblewrap (the sandbox user code runs in; `make up` needs
# it too, SYSDEPS=run), chromium (driven by Playwright through /usr/bin/chromium) and
# prometheus (scrapes a real `leptonic up`) for the browser and Prometheus tests.
# Installs only what is missing; quiet when everything is there. Without root it uses
# sudo; where neither works it warns, and the tests that need them skip locally — unless
# LEPTONIC_REQUIRE_SYSTEM_DEPS=1 (CI), where a missing package is an error.
set -euo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
if [ "${1:-}" != "run" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "sysdeps: cannot install ${need[*]} (not root, no sudo); their tests will skip" >&2
  [ "${LEPTONIC_REQUIRE_SYSTEM_DEPS:-}" = "1" ] && exit 1
  exit 0
fi
echo "sysdeps: installing ${need[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
if ! { "${sudo[@]}" apt-get update -qq \
       && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null; then
  echo "sysdeps: apt-get could not install ${need[*]}" >&2
  [ "${LEPTONIC_REQUIRE_SYSTEM_DEPS:-}" = "1" ] && exit 1
fi
exit 0
