"""scripts/readme_numbers.py --check on the tree (README.md, bench/README.md), and mutations it must catch (ctest
readme_numbers, label "script").

1. The documents' numbers match the result files (--check exits 0).
2. On a temp copy of README.md, bench/README.md and bench/results: one digit of a number edited by hand, a number
   pointed at another file, a claim's link removed, a claim link with an unknown id, a plain
   result-file link added in the numbers section, and a changed value in a result file each
   make --check exit 1 naming the claim (and the file); regenerating the hand-edited copy
   gives back README.md byte for byte; a one-digit edit of any claim's number fails.

usage: readme_numbers_test.py [REPO_ROOT]
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                       os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "readme_numbers.py")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(*args):
    p = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


rc, out = run("--check", "--root", ROOT)
check(rc == 0, f"README.md and bench/README.md are current (--check rc {rc})\n{out}")

with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
link = re.compile(r'\[([^\]]*)\]\(([^\s)]+) "n:([A-Za-z0-9_.-]+)"\)')
first = link.search(readme)
check(first is not None, "README.md has claim links")
if first is None:
    sys.exit(1)
cid = first.group(3)


def temp_root():
    d = tempfile.mkdtemp(prefix="readme_numbers_")
    shutil.copytree(os.path.join(ROOT, "bench", "results"), os.path.join(d, "bench", "results"))
    shutil.copy(os.path.join(ROOT, "bench", "README.md"), os.path.join(d, "bench", "README.md"))
    shutil.copy(os.path.join(ROOT, "README.md"), os.path.join(d, "README.md"))
    return d


def mutated(text, expect, what, root=None):
    d = root or temp_root()
    try:
        with open(os.path.join(d, "README.md"), "w") as f:
            f.write(text)
        rc, out = run("--check", "--root", d)
        check(rc == 1 and all(e in out for e in expect),
              f"{what}: --check fails naming {expect} (rc {rc})" + ("" if rc == 1 else "\n" + out))
        return d, out
    except Exception:
        shutil.rmtree(d)
        raise


# The first digit of the first number changed by hand; --check prints the diff.
s, e = first.span(1)
num = first.group(1)
pos = next(i for i, ch in enumerate(num) if ch.isdigit())
new_digit = "7" if num[pos] != "7" else "3"
edited = readme[:s] + num[:pos] + new_digit + num[pos + 1:] + readme[e:]
d, out = mutated(edited, [f"claim {cid}", first.group(2), "+++ README.md (from the results)",
                          readme[first.start():first.end()]],
                 f"hand-edited number {num!r} -> {num[:pos] + new_digit + num[pos + 1:]!r}")
rc, _ = run("--root", d)
with open(os.path.join(d, "README.md")) as f:
    check(rc == 0 and f.read() == readme, "regenerating the hand-edited copy restores README.md")
shutil.rmtree(d)

# Every other claim's number, in README.md and bench/README.md, with one digit changed fails
# too (one temp copy, rewritten).
d = temp_root()
missed = []
for doc in ("README.md", os.path.join("bench", "README.md")):
    with open(os.path.join(ROOT, doc)) as f:
        original = f.read()
    for m in list(link.finditer(original))[1 if doc == "README.md" else 0:]:
        s, e = m.span(1)
        num = m.group(1)
        pos = next((i for i, ch in enumerate(num) if ch.isdigit()), None)
        if pos is None:
            continue
        digit = "7" if num[pos] != "7" else "3"
        with open(os.path.join(d, doc), "w") as f:
            f.write(original[:s] + num[:pos] + digit + num[pos + 1:] + original[e:])
        rc, out = run("--check", "--root", d)
        if rc != 1 or f"{doc}: claim {m.group(3)} " not in out:
            missed.append(f"{doc}:{m.group(3)}")
    with open(os.path.join(d, doc), "w") as f:
        f.write(original)
check(not missed, f"a one-digit edit of every claim's number fails --check (missed: {missed})")
shutil.rmtree(d)

# The number pointed at another result file.
s, e = first.span(2)
d, _ = mutated(readme[:s] + "bench/results/h100/quant.json" + readme[e:], [f"claim {cid}"],
               "number linked to another file")
shutil.rmtree(d)

# The claim's link removed (its number written as plain text).
d, _ = mutated(readme[:first.start()] + first.group(1) + readme[first.end():],
               [f"claim {cid}", "appears 0 times"], "claim link removed")
shutil.rmtree(d)

# A claim id the table does not have, and a result-file link without a claim.
d, _ = mutated(readme.replace(f'"n:{cid}"', '"n:no-such-claim"', 1),
               ["claim no-such-claim", "not in the claims table"], "unknown claim id")
shutil.rmtree(d)
end = readme.index("<!-- numbers:end -->")
d, _ = mutated(readme[:end] + " [x.json](bench/results/h100/moe.json)" + readme[end:],
               ["without a claim"], "untagged result link in the section")
shutil.rmtree(d)

# A changed value in the result file of the first claim: the number follows the file.
rel = first.group(2)
d = temp_root()
path = os.path.join(d, rel)
with open(path) as f:
    data = json.load(f)
cases = data["cases"] if "cases" in data else [c for r in data["runs"] for c in r["cases"]]
for c in cases:
    for key in ("us", "graph_us", "cublas_bf16_us"):
        if isinstance(c.get(key), float):
            c[key] *= 1.5
with open(path, "w") as f:
    json.dump(data, f)
_, out = mutated(readme, [rel, "README has"], f"values of {rel} changed", root=d)
check(f"claim {cid} ({rel})" in out, f"the changed file names claim {cid} and {rel}")
shutil.rmtree(d)

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
