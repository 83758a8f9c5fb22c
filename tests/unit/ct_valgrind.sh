#!/bin/sh
# ct_valgrind.sh VALGRIND EXE [--expect-leak]: runs the constant-time test EXE under memcheck
# (tests/unit/test_ct_valgrind.c).
#   exit 0   no error: nothing branched on, or indexed memory with, secret data
#   exit 1   valgrind reported errors (a branch or address depending on secret data)
#   exit 2   the test failed otherwise (an assertion, a crash)
#   exit 77  skipped: valgrind cannot read the executable's debug info (e.g. clang's DWARF 5
#            with an older valgrind), or EXE was not run under valgrind
# With --expect-leak (the deliberately leaky build, registered WILL_FAIL): exit 1 only when
# valgrind reported errors; any other outcome exits 0, which WILL_FAIL turns into a failure.
valgrind=$1
exe=$2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$valgrind" --quiet --error-exitcode=42 --track-origins=yes "$exe" >"$log" 2>&1
rc=$?
cat "$log"
if grep -q "I can't recover" "$log"; then
    echo "ct_valgrind: valgrind cannot read the debug info of $exe: skipped"
    exit 77
fi
[ "$rc" -eq 77 ] && exit 77
if [ "$3" = "--expect-leak" ]; then
    if [ "$rc" -eq 42 ]; then
        echo "ct_valgrind: the leaky comparison was caught, as it must be"
        exit 1
    fi
    echo "ct_valgrind: the leaky comparison was NOT caught (exit $rc)"
    exit 0
fi
case $rc in
0) exit 0 ;;
42) echo "ct_valgrind: secret-dependent branch or memory index (see above)"; exit 1 ;;
*) echo "ct_valgrind: test failed (exit $rc)"; exit 2 ;;
esac
