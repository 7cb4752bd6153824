"""Picks a small seed set out of a long fuzz run, by coverage: run from fuzz/ as

    <fuzz binary> -merge=1 -use_counters=0 -merge_control_file=/tmp/t.ctl /tmp/empty corpus/<t> /tmp/corpus-<t>
    python3 pick_seeds.py /tmp/t.ctl corpus/<t> 100 2

The hand-written seeds (the control file's `corpus/...` paths) all stay; then the run's inputs
that add the most coverage edges not yet covered are copied in as `cov-<sha1>`, until MAX files
or until the best adds fewer than MIN_GAIN edges."""
import hashlib
import os
import shutil
import sys

control, out, max_files, min_gain = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lines = open(control).read().splitlines()
count = int(lines[0])
files = lines[2:2 + count]
edges = {}
for line in lines[2 + count:]:
    parts = line.split()
    if parts and parts[0] == "COV":
        edges[int(parts[1])] = set(map(int, parts[2:]))
seeds = [i for i, f in enumerate(files) if f.startswith("corpus/")]
covered = set().union(*(edges.get(i, set()) for i in seeds))
picked = list(seeds)
while len(picked) < max_files and edges:
    best = max(edges, key=lambda i: (len(edges[i] - covered), -os.path.getsize(files[i])))
    if len(edges[best] - covered) < min_gain:
        break
    picked.append(best)
    covered |= edges[best]
for i in picked[len(seeds):]:
    data = open(files[i], "rb").read()
    shutil.copy(files[i], os.path.join(out, "cov-" + hashlib.sha1(data).hexdigest()[:10]))
total = len(set().union(*edges.values())) if edges else 0
print(f"{len(picked)} files ({len(seeds)} seeds) cover {len(covered)}/{total} edges of the merged corpus")
