# Reads one boot's console (KTAP) on stdin and runs Linux's own KUnit parser
# (tools/testing/kunit/kunit_parser.py, provisioned by `cargo xtask provision`) over it.
# Prints one JSON line with the parser's counts and errors. argv[1]: the parser's folder.
import io
import json
import sys

# The parser prints through a Printer bound to sys.stdout when it is imported: keep what
# it prints apart from the JSON answer.
answer = sys.stdout
sys.stdout = io.StringIO()
sys.path.insert(0, sys.argv[1])
import kunit_parser  # noqa: E402

lines = sys.stdin.read().splitlines(keepends=True)
test = kunit_parser.parse_run_tests(lines)
printed = sys.stdout.getvalue()
sys.stdout = answer
counts = test.counts
print(json.dumps({
    "status": test.status.name,
    "errors": counts.errors,
    "passed": counts.passed,
    "failed": counts.failed,
    "crashed": counts.crashed,
    "skipped": counts.skipped,
    "output": [line for line in printed.splitlines() if "ERROR" in line],
}))
