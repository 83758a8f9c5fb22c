#!/bin/sh
# check_symbols.sh LIB...: each static library of the terminal core (msr, link, txn) calls
# nothing outside the C library's string functions and lib/ (mpos_*): no allocator, no stdio,
# no OS call, no OpenSSL (docs/terminal-design.md, core rules). Checked on the objects' undefined
# symbols, so a call hidden behind a macro or an inline function is caught too. Sanitizer,
# fortify and stack-protector helpers the compiler adds are allowed.
set -eu
allowed='^(mem(cpy|set|move|cmp|chr)|strlen|strcmp|mpos_[a-z0-9_]+|__(asan|ubsan|sanitizer|sancov)_[A-Za-z0-9_]+|__(start|stop)___sancov_[a-z_]+|__[a-z]+_chk|__stack_chk_fail|_GLOBAL_OFFSET_TABLE_)$'
bad=0
for lib in "$@"; do
    extra=$(nm -u "$lib" | awk 'NF == 2 { print $2 } NF == 1 && $1 !~ /:$/ { print $1 }' |
        sort -u | grep -Ev "$allowed" || true)
    if [ -n "$extra" ]; then
        echo "$lib calls outside the portable set:" >&2
        echo "$extra" | sed 's/^/    /' >&2
        bad=1
    else
        echo "$(basename "$lib"): portable"
    fi
done
exit "$bad"
