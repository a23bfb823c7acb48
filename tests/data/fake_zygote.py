"""A zygote that breaks the protocol on purpose: ``fake_zygote.py SCENARIO PARENT_PID``.

Scenarios: ok (forks a short-lived child and reports it), garbage (answers with a line that is
not JSON), wrong_id (answers another request's id), no_fork (never answers), no_end (reports a
child but never its end), unsafe (refuses to fork).
"""

import json
import subprocess
import sys

scenario = sys.argv[1]
out = sys.stdout


def send(message):
    out.write(json.dumps(message) + "\n")
    out.flush()


send({"ready": True, "import_s": 0.0, "threads": 1})
for line in sys.stdin:
    request = json.loads(line)
    rid = request["id"]
    if scenario == "garbage":
        out.write("Some library printed this to stdout\n")
        out.flush()
    elif scenario == "wrong_id":
        send({"id": rid + 1, "pid": 1})
    elif scenario == "no_fork":
        pass
    elif scenario == "unsafe":
        send({"id": rid, "unsafe": "zygote: 1 Python thread(s) running (Thread-1)"})
    elif scenario == "no_end":
        child = subprocess.Popen(["sleep", "30"])
        send({"id": rid, "pid": child.pid})
    else:
        child = subprocess.Popen(["sleep", "0.1"])
        send({"id": rid, "pid": child.pid})
        send({"id": rid, "pid": child.pid, "returncode": child.wait()})
