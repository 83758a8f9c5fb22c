#!/bin/sh
# check_portable.sh DIR: the terminal core's sources in DIR include only the C library headers
# a freestanding port provides (plus string.h) and lib/'s mpos/ headers, and call no allocator,
# stdio or OS function (docs/terminal-design.md, core rules).
set -eu
dir=$1
bad=0
for f in "$dir"/*.c "$dir"/*.h; do
    grep -E '^[[:space:]]*#[[:space:]]*include' "$f" |
        grep -Ev '<(stddef|stdint|string)\.h>|"mpos/[a-z0-9_]+\.h"|"emv_[a-z_]+\.h"' &&
        { echo "$f: include outside the portable set" >&2; bad=1; }
    grep -nE '\b(malloc|calloc|realloc|free|printf|fprintf|fopen|time|rand|getenv)[[:space:]]*\(' "$f" &&
        { echo "$f: allocator, stdio or OS call" >&2; bad=1; }
done
[ "$bad" -eq 0 ] && echo "portable: $(ls "$dir"/*.c | wc -l) sources checked"
exit "$bad"
