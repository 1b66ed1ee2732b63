#!/usr/bin/env bash
# Debian packages the features need (ffmpeg for the miner's transcode executor). Installed only
# when missing and when running as root; otherwise say what is missing and carry on (the tests
# that need them skip with a visible reason outside CI).
set -u
missing=()
for pkg_bin in ffmpeg:ffmpeg; do
  bin=${pkg_bin#*:}; pkg=${pkg_bin%%:*}
  command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null \
    || echo "warning: could not install ${missing[*]}; features needing them are unavailable" >&2
else
  echo "note: missing Debian packages (${missing[*]}); install them to use those features" >&2
fi
exit 0
