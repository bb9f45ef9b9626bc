#!/usr/bin/env python3
"""Helpers of benches/soak.sh (standard library only; see that script's header).

  soak_sample.py sample PID DATA_DIR CSV PHASE T0 [MAX_SECONDS] [INTERVAL]
      Append one row a second (INTERVAL) to CSV until PID exits (or is a
      zombie) or MAX_SECONDS pass: t_s (seconds since the epoch time T0),
      phase, rss_kb (VmRSS of PID), hwm_kb (VmHWM), cpu_s (user+system of
      PID), data_bytes (apparent size of every file under DATA_DIR, as
      `du -sb`), data_alloc_bytes (allocated blocks).
  soak_sample.py wait-port HOST:PORT T0 TIMEOUT
      Print the seconds from T0 until HOST:PORT accepts a TCP connection;
      exit 1 after TIMEOUT seconds.
  soak_sample.py wait-exit PID TIMEOUT
      Print the seconds until PID has exited (or is a zombie); exit 1 after
      TIMEOUT seconds.
  soak_sample.py rss PID
      Print VmRSS of PID in kB.
  soak_sample.py messages HTTP_ADDR
      Print the sum of antaca_iso_responses_total from http://HTTP_ADDR/metrics
      (every ISO response the server has written since it started).
  soak_sample.py chunk CSV INDEX REPORT START_S END_S SERVER_MESSAGES
      Append the row of one sim run (its JSON REPORT) to CSV.
  soak_sample.py summary OUT_DIR KEY=VALUE...
      Read OUT_DIR/chunks.csv and OUT_DIR/samples.csv and the restart
      measurements given as KEY=VALUE, write OUT_DIR/summary.json and
      OUT_DIR/soak.svg (RSS, data directory and throughput over time) and
      print the summary.
"""
import csv
import json
import os
import socket
import sys
import time
import urllib.request


def proc_state(pid):
    """The process state letter, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]


def alive(pid):
    state = proc_state(pid)
    return state is not None and state not in "ZX"


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    # utime and stime are fields 14 and 15 of stat; fields[0] is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dir_bytes(path):
    apparent = allocated = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue  # removed between the listing and the stat
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


FIELDS = ["t_s", "phase", "rss_kb", "hwm_kb", "cpu_s", "data_bytes", "data_alloc_bytes", "loadavg1"]


def loadavg1():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return ""


def sample(pid, data, out, phase, t0, max_seconds=86400.0, interval=1.0):
    pid, t0, max_seconds, interval = int(pid), float(t0), float(max_seconds), float(interval)
    new = not os.path.exists(out)
    deadline = time.monotonic() + max_seconds
    with open(out, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(FIELDS)
        next_tick = time.monotonic()
        while alive(pid) and time.monotonic() < deadline:
            rss = status_kb(pid, "VmRSS")
            hwm = status_kb(pid, "VmHWM")
            cpu = cpu_s(pid)
            apparent, allocated = dir_bytes(data)
            if rss is not None:
                w.writerow([f"{time.time() - t0:.2f}", phase, rss, hwm,
                            f"{cpu:.2f}" if cpu is not None else "", apparent, allocated, loadavg1()])
                f.flush()
            next_tick += interval
            time.sleep(max(0.0, next_tick - time.monotonic()))


def wait_port(addr, t0, timeout):
    host, port = addr.rsplit(":", 1)
    t0, timeout = float(t0), float(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                print(f"{time.time() - t0:.3f}")
                return 0
        except OSError:
            time.sleep(0.01)
    print(f"nothing listens on {addr} after {timeout:.0f} s", file=sys.stderr)
    return 1


def wait_exit(pid, timeout):
    pid, timeout = int(pid), float(timeout)
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not alive(pid):
            print(f"{time.monotonic() - start:.3f}")
            return 0
        time.sleep(0.01)
    print(f"process {pid} still runs after {timeout:.0f} s", file=sys.stderr)
    return 1


def messages(http_addr):
    with urllib.request.urlopen(f"http://{http_addr}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("antaca_iso_responses_total"):
            total += int(float(line.rsplit(None, 1)[1]))
    print(total)
    return 0


CHUNK_FIELDS = ["chunk", "start_s", "end_s", "duration_s", "messages", "throughput_per_s",
                "p50_us", "p99_us", "p999_us", "max_us", "errors", "approved_share",
                "reconciled", "server_messages"]


def chunk(out, index, report, start_s, end_s, server_messages):
    r = json.load(open(report))
    codes = r.get("codes") or {}
    answered = sum(codes.values())
    rec = r.get("reconciliation") or {}
    new = not os.path.exists(out)
    with open(out, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(CHUNK_FIELDS)
        w.writerow([index, start_s, end_s, r["duration_s"], r["received"],
                    f'{r["throughput_per_s"]:.1f}', r["p50_us"], r["p99_us"], r["p999_us"],
                    r["max_us"], r["errors"],
                    f"{codes.get('00', 0) / answered:.4f}" if answered else "",
                    rec.get("ok", ""), server_messages])
    print(f'chunk {index}: {r["received"]} messages  {r["throughput_per_s"]:.0f}/s  '
          f'p99 {r["p99_us"] / 1000:.2f} ms  max {r["max_us"] / 1000:.1f} ms  '
          f'errors {r["errors"]}  reconciled {rec.get("ok", "-")}')
    return 0


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def svg(path, samples, chunks):
    """RSS and data directory (MiB, left axis) and throughput (k/s, right) over time."""
    W, H, L, R, T, B = 900, 440, 70, 70, 75, 50
    load = [s for s in samples if s["phase"] == "load"]
    restart = [s for s in samples if s["phase"] != "load"]
    xs = [float(s["t_s"]) for s in samples] + [float(c["end_s"]) for c in chunks]
    xmax = max(xs) if xs else 1.0
    mib = [int(s["rss_kb"]) / 1024 for s in samples] + \
          [int(s["data_bytes"]) / 2**20 for s in samples]
    ymax = max(mib) * 1.05 if mib else 1.0
    tput = [float(c["throughput_per_s"]) / 1000 for c in chunks]
    tmax = max(tput) * 1.1 if tput else 1.0

    def X(t):
        return L + (W - L - R) * t / xmax

    def Y(v, top):
        return H - B - (H - T - B) * v / top

    def line(points, colour, dash=""):
        if not points:
            return ""
        d = " ".join(f"{X(x):.1f},{Y(y, ymax):.1f}" for x, y in points)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        return f'<polyline fill="none" stroke="{colour}" stroke-width="1.5"{extra} points="{d}"/>'

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="20" font-size="14">antaca soak: resident memory, data directory '
           f'and throughput over time</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{W - R}" y1="{T}" x2="{W - R}" y2="{H - B}" stroke="black"/>']
    for i in range(6):
        v, t, s = ymax * i / 5, tmax * i / 5, xmax * i / 5
        out.append(f'<text x="{L - 5}" y="{Y(v, ymax) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
        out.append(f'<text x="{W - R + 5}" y="{Y(t, tmax) + 4:.1f}">{t:.0f}</text>')
        out.append(f'<text x="{X(s):.1f}" y="{H - B + 16}" text-anchor="middle">{s:.0f}</text>')
    out.append(f'<text x="{(W) / 2}" y="{H - 12}" text-anchor="middle">seconds since the first start</text>')
    out.append(f'<text x="15" y="{T - 10}">MiB</text>')
    out.append(f'<text x="{W - R}" y="{T - 10}">k msg/s</text>')
    for group, dash in ((load, ""), (restart, "4,3")):
        out.append(line([(float(s["t_s"]), int(s["rss_kb"]) / 1024) for s in group], "#c0392b", dash))
        out.append(line([(float(s["t_s"]), int(s["data_bytes"]) / 2**20) for s in group], "#2471a3", dash))
    for c in chunks:
        y = Y(float(c["throughput_per_s"]) / 1000, tmax)
        out.append(f'<line x1="{X(float(c["start_s"])):.1f}" y1="{y:.1f}" '
                   f'x2="{X(float(c["end_s"])):.1f}" y2="{y:.1f}" stroke="#229954" stroke-width="3"/>')
    legend = [("#c0392b", "resident memory (MiB; dashed: after the restart)"),
              ("#2471a3", "data directory (MiB)"), ("#229954", "throughput per chunk (k/s)")]
    for i, (colour, label) in enumerate(legend):
        x, y = L + 10 + 330 * (i % 2), 38 + 16 * (i // 2)
        out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 20}" y2="{y - 4}" stroke="{colour}" stroke-width="3"/>')
        out.append(f'<text x="{x + 26}" y="{y}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o for o in out if o) + "\n")


def summary(out_dir, *pairs):
    extra = {}
    for p in pairs:
        k, _, v = p.partition("=")
        n = None if k.endswith("_code") else num(v)
        extra[k] = v if n is None else (int(n) if n.is_integer() and "." not in v else n)
    chunks = list(csv.DictReader(open(os.path.join(out_dir, "chunks.csv"))))
    samples = list(csv.DictReader(open(os.path.join(out_dir, "samples.csv"))))
    load = [s for s in samples if s["phase"] == "load"]
    messages = sum(int(c["messages"]) for c in chunks)
    server_messages = int(chunks[-1]["server_messages"]) if chunks else 0
    max_rss_kb = max((int(s["rss_kb"]) for s in load), default=0)
    end_bytes = int(load[-1]["data_bytes"]) if load else 0
    start_bytes = int(load[0]["data_bytes"]) if load else 0
    first = float(chunks[0]["throughput_per_s"]) if chunks else None
    last = float(chunks[-1]["throughput_per_s"]) if chunks else None
    per_m = server_messages / 1e6 if server_messages else None
    s = {
        "chunks": len(chunks),
        "load_seconds": sum(float(c["duration_s"]) for c in chunks),
        "messages_sim": messages,
        "messages_server": server_messages,
        "errors": sum(int(c["errors"]) for c in chunks),
        "all_reconciled": all(c["reconciled"] == "True" for c in chunks),
        "first_chunk_throughput_per_s": first,
        "last_chunk_throughput_per_s": last,
        "last_over_first": last / first if first else None,
        "first_chunk_p99_us": int(chunks[0]["p99_us"]) if chunks else None,
        "last_chunk_p99_us": int(chunks[-1]["p99_us"]) if chunks else None,
        "max_p99_us": max((int(c["p99_us"]) for c in chunks), default=None),
        "rss_start_kb": int(load[0]["rss_kb"]) if load else None,
        "rss_max_kb": max_rss_kb,
        "rss_end_kb": int(load[-1]["rss_kb"]) if load else None,
        "rss_bytes_per_message": max_rss_kb * 1024 / server_messages if server_messages else None,
        "rss_growth_bytes_per_message": (max_rss_kb - int(load[0]["rss_kb"])) * 1024 / server_messages
        if server_messages else None,
        "loadavg1_max": max((float(s["loadavg1"]) for s in load if s.get("loadavg1")), default=None),
        "server_cpu_s_per_million_messages": float(load[-1]["cpu_s"]) / (server_messages / 1e6)
        if server_messages and load and load[-1].get("cpu_s") else None,
        "data_bytes_end": end_bytes,
        "data_bytes_per_message": (end_bytes - start_bytes) / server_messages if server_messages else None,
    }
    s.update(extra)
    if per_m and isinstance(s.get("restart_listen_s"), float):
        s["restart_listen_s_per_million_messages"] = s["restart_listen_s"] / per_m
    if per_m and isinstance(s.get("verify_s"), float):
        s["verify_s_per_million_messages"] = s["verify_s"] / per_m
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(s, f, indent=2)
        f.write("\n")
    svg(os.path.join(out_dir, "soak.svg"), samples, chunks)

    def fmt(v, unit="", scale=1.0, digits=1):
        return "-" if v is None or v == "" else f"{float(v) / scale:,.{digits}f}{unit}"

    print(f"load            {s['chunks']} chunks, {s['load_seconds']:.0f} s, "
          f"{server_messages:,} messages (server), {messages:,} (sim), errors {s['errors']}, "
          f"reconciled {s['all_reconciled']}")
    print(f"throughput      first chunk {fmt(first, '/s', digits=0)}, last {fmt(last, '/s', digits=0)}, "
          f"last/first {fmt(s['last_over_first'], digits=2)}; p99 first {fmt(s['first_chunk_p99_us'], ' ms', 1000, 2)}, "
          f"last {fmt(s['last_chunk_p99_us'], ' ms', 1000, 2)}, worst {fmt(s['max_p99_us'], ' ms', 1000, 2)}")
    print(f"memory          RSS {fmt(s['rss_start_kb'], ' MiB', 1024)} -> max {fmt(max_rss_kb, ' MiB', 1024)}, "
          f"{fmt(s['rss_bytes_per_message'], ' bytes', digits=0)} per message "
          f"({fmt(s['rss_growth_bytes_per_message'], ' bytes', digits=0)} of growth); "
          f"server CPU {fmt(s['server_cpu_s_per_million_messages'], ' s', digits=1)} per million; "
          f"1-min load average up to {fmt(s['loadavg1_max'], digits=2)} (2 would be both cores busy)")
    print(f"disk            {fmt(end_bytes, ' MiB', 2**20)}, {fmt(s['data_bytes_per_message'], ' bytes', digits=0)} per message")
    print(f"stop            SIGTERM to exit {fmt(s.get('stop_s'), ' s', digits=2)} (exit code {s.get('stop_exit', '-')})")
    print(f"restart         listening after {fmt(s.get('restart_listen_s'), ' s', digits=2)} "
          f"({fmt(s.get('restart_listen_s_per_million_messages'), ' s', digits=2)} per million messages), "
          f"first answer {fmt(s.get('first_answer_ms'), ' ms', digits=0)} after listening (code {s.get('first_answer_code', '-')}), "
          f"RSS after {fmt(s.get('restart_rss_kb'), ' MiB', 1024)}")
    print(f"verify          {fmt(s.get('verify_s'), ' s', digits=1)}, exit code {s.get('verify_exit', '-')}")
    print(f"first minute    authorization {s.get('first_minute_code', '-')}; after the soak: repeat "
          f"{s.get('first_minute_repeat', '-')}, reversal {s.get('first_minute_reversal_code', '-')} released "
          f"{s.get('first_minute_released_minor', '-')} minor units (700 expected)")
    return 0


def main(argv):
    commands = {"sample": sample, "wait-port": wait_port, "wait-exit": wait_exit,
                "messages": messages, "chunk": chunk, "summary": summary,
                "rss": lambda pid: print(status_kb(int(pid), "VmRSS") or 0) or 0}
    if len(argv) < 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[1]](*argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
