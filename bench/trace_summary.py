# Sums one CUDA-graph replay of a bench/kernel_trace.cc CSV by kernel: the graph nodes (graph_id != 0)
# are split into replays at GPU gaps over 50 µs, and the last replay but one (the last may be cut
# short) is summed per (kernel, grid size): launches, µs in the kernel, µs of gap before it.
#   python3 bench/trace_summary.py trace.csv
import sys, collections, re
rows = []
for line in open(sys.argv[1]):
    p = line.rstrip("\n").split(",", 5)
    if len(p) < 6: continue
    rows.append((p[0], int(p[1]), int(p[2]), int(p[3]), p[5], p[4]))  # kind, start, end, graph, name, grid
g = sorted([r for r in rows if r[3] != 0], key=lambda r: r[1])
# split into replays by gaps
replays, cur = [], []
for r in g:
    if cur and r[1] - cur[-1][2] > 50_000: replays.append(cur); cur = []
    cur.append(r)
if cur: replays.append(cur)
print(f"{len(replays)} replays; kernels per replay: {[len(x) for x in replays[-4:]]}")
rep = replays[-2] if len(replays) > 1 else replays[-1]
span = (rep[-1][2] - rep[0][1]) / 1e3
busy = sum(r[2] - r[1] for r in rep) / 1e3
print(f"replay span {span:.1f} us, in kernels {busy:.1f} us, gaps {span - busy:.1f} us, {len(rep)} nodes")
def short(n):
    n = n.replace("(anonymous namespace)", "anon")
    n = re.sub(r"^void ", "", n)
    n = re.sub(r"\(.*", "", n)
    depth, o = 0, ""
    for ch in n:
        depth += ch == "<"
        if depth == 0 and ch != ">": o += ch
        depth -= ch == ">"
    return o.split("::")[-1][:48]
by = collections.defaultdict(lambda: [0, 0.0, 0.0])
prev_end = None
for r in rep:
    k = by[(r[0], f"{short(r[4])} [{r[5]}]")]
    k[0] += 1; k[1] += (r[2] - r[1]) / 1e3
    if prev_end is not None: k[2] += (r[1] - prev_end) / 1e3
    prev_end = r[2]
print(f"{'kernel [grid]':50s} {'n':>5s} {'us':>9s} {'us each':>8s} {'gap before us':>13s}")
for (kind, name), (n, us, gap) in sorted(by.items(), key=lambda kv: -kv[1][1]):
    print(f"{kind} {name:48s} {n:5d} {us:9.1f} {us / n:8.2f} {gap:13.1f}")
