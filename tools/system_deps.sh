#!/usr/bin/env bash
# Debian packages the features need (ffmpeg for the miner's transcode executor, blender for its
# render executor). Installed only when missing and when running as root; otherwise say what is
# missing and carry on (the tests that need them skip with a visible reason outside CI).
# Without Recommends: headless `blender -b` works without them (they are GStreamer, gphoto2,
# poppler and similar desktop extras); ffmpeg has none. What it does need and Debian's blender
# package does not depend on is libEGL: Workbench and EEVEE render through (surfaceless) EGL,
# loaded at run time, and blender aborts without it ("Couldn't open libEGL.so.1").
set -u
missing=()
for pkg_bin in ffmpeg:ffmpeg blender:blender; do
  bin=${pkg_bin#*:}; pkg=${pkg_bin%%:*}
  command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg")
done
{ ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep -q 'libEGL\.so\.1 ' || missing+=(libegl1)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  (apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >/dev/null \
    || echo "warning: could not install ${missing[*]}; features needing them are unavailable" >&2
else
  echo "note: missing Debian packages (${missing[*]}); install them to use those features" >&2
fi
exit 0
