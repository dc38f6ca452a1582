#!/usr/bin/env python3
"""Parsing and reporting for bench/run.sh (standard library only).

  report.py record --jsonl FILE --test T --proxy P --round N --kind K --out TOOL_OUTPUT [...]
      parse one tool run (wrk, h2load or a bench-client JSON line) and append
      one JSON record to FILE
  report.py summarize --jsonl FILE --meta META.json --out PREFIX
      medians over rounds, ratios to nginx, CPU shares, per-core figures and
      ferry's targets: writes PREFIX.md and PREFIX.json
"""

import argparse
import json
import re
import statistics
import sys

# test id -> (title, tool, metrics); metric = (key, label, better, per_core)
TESTS = [
    ("h1", "(1) HTTPS HTTP/1.1 keep-alive, 100 B responses", "wrk -t1 -c64 --latency", [
        ("req_s", "req/s", "higher", True),
        ("p50_ms", "p50 latency (ms)", "lower", False),
        ("p99_ms", "p99 latency (ms)", "lower", False),
    ]),
    ("h2", "(2) HTTPS HTTP/2, 100 B responses", "h2load -c16 -m10", [
        ("req_s", "req/s", "higher", True),
    ]),
    ("tls_full", "(3a) new TLS connection per request, full handshake", "bench-client conn -c32", [
        ("conn_s", "conn/s", "higher", True),
    ]),
    ("tls_resumed", "(3b) new TLS connection per request, resumed (TLS 1.3 ticket)", "bench-client conn --resume -c32", [
        ("conn_s", "conn/s", "higher", True),
    ]),
    ("bulk", "(4) HTTPS HTTP/1.1, 1 MiB responses", "wrk -t1 -c8", [
        ("mb_s", "MB/s", "higher", True),
    ]),
    ("ws_echo", "(5a) WebSocket echo over HTTP/1.1, 128 B, 64 connections", "bench-client ws-echo", [
        ("msgs_s", "msgs/s", "higher", True),
        ("p50_ms", "p50 round trip (ms)", "lower", False),
        ("p99_ms", "p99 round trip (ms)", "lower", False),
    ]),
    ("ws_echo_h2", "(5b) WebSocket echo over HTTP/2 (RFC 8441), 128 B, 64 WebSockets on 4 connections",
     "bench-client ws-echo --h2", [
        ("msgs_s", "msgs/s", "higher", True),
        ("p50_ms", "p50 round trip (ms)", "lower", False),
        ("p99_ms", "p99 round trip (ms)", "lower", False),
    ]),
    ("ws_idle", "(6) idle TLS WebSockets", "bench-client ws-idle", [
        ("kb_per_session", "proxy RSS per session (KB)", "lower", False),
    ]),
    ("startup", "(7) start-up", "bench-client startup", [
        ("ready_ms", "start to first served request (ms)", "lower", False),
        ("idle_rss_mb", "idle RSS after one request (MB)", "lower", False),
        ("idle_pss_mb", "idle PSS after one request (MB)", "lower", False),
    ]),
    ("fixed_rate", "(8) proxy CPU per request at a fixed offered rate, HTTP/1.1", "h2load --h1 -c16 --rps", [
        ("cpu_us_per_req", "proxy CPU µs per request", "lower", False),
        ("req_s", "achieved req/s", "info", False),
    ]),
    ("static_small", "(9a) static file, 1 KiB, HTTPS HTTP/1.1 keep-alive", "wrk -t1 -c64 --latency", [
        ("req_s", "req/s", "higher", True),
        ("p50_ms", "p50 latency (ms)", "lower", False),
        ("p99_ms", "p99 latency (ms)", "lower", False),
    ]),
    ("static_large", "(9b) static file, 1 MiB, HTTPS HTTP/1.1", "wrk -t1 -c8", [
        ("mb_s", "MB/s", "higher", True),
    ]),
    ("compress_gzip", "(10a) gzip of a proxied 100 KiB JSON response, fixed offered rate",
     "h2load --h1 -c4 --rps, Accept-Encoding: gzip", [
        ("cpu_us_per_resp", "proxy CPU µs per response", "lower", False),
        ("resp_bytes", "body bytes per response (of 102,400)", "info", False),
        ("req_s", "achieved responses/s", "info", False),
    ]),
    ("compress_br", "(10b) brotli of a proxied 100 KiB JSON response, fixed offered rate",
     "h2load --h1 -c4 --rps, Accept-Encoding: br", [
        ("cpu_us_per_resp", "proxy CPU µs per response", "lower", False),
        ("resp_bytes", "body bytes per response (of 102,400)", "info", False),
        ("req_s", "achieved responses/s", "info", False),
    ]),
]
TEST_INDEX = {t[0]: t for t in TESTS}

# ferry's targets from issue 7: (test, metric, per_core, op, value, text)
TARGETS = [
    ("h1", "req_s", True, ">=", 77000, "≥ 77k req/s per core"),
    ("h1", "p99_ms", False, "<=peer", None, "p99 ≤ best peer's"),
    ("h2", "req_s", True, ">=", 85000, "≥ 85k req/s per core"),
    ("tls_full", "conn_s", True, ">=", 8000, "≥ 8k full handshakes/s per core"),
    ("bulk", "mb_s", True, ">=", 3100, "≥ 3.1 GB/s per core"),
    ("ws_echo", "msgs_s", True, ">=", 101000, "≥ 101k msgs/s per core"),
    ("ws_echo", "p99_ms", False, "<=peer", None, "p99 ≤ best peer's"),
    ("ws_echo_h2", "msgs_s", True, ">=", 101000, "≥ 101k msgs/s per core"),
    ("ws_idle", "kb_per_session", False, "<=", 8, "≤ 8 KB per idle TLS WebSocket"),
    ("startup", "ready_ms", False, "<", 50, "ready in < 50 ms"),
    ("startup", "idle_rss_mb", False, "<", 10, "< 10 MB RSS idle"),
]

# issue 14: (test, metric, minimum ratio to nginx per proxy core, text)
TARGETS_14 = [
    ("static_small", "req_s", 1.0, "≥ 1.0× nginx per core"),
    ("static_large", "mb_s", 1.0, "≥ 1.0× nginx per core"),
]

# the JSON body of the compress test, uncompressed
JSON_BYTES = 102400

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def to_ms(s):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", s.strip())
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def parse_wrk(text):
    out, errs = {}, []
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["req_s"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, text, re.M)
        if m:
            out[key] = to_ms(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
        errs.append("%s non-2xx/3xx responses" % m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        c, r, w, t = map(int, m.groups())
        out["socket_errors"] = {"connect": c, "read": r, "write": w, "timeout": t}
        if c + r + w + t:
            errs.append("socket errors: connect %d, read %d, write %d, timeout %d" % (c, r, w, t))
    if "req_s" not in out:
        errs.append("wrk printed no Requests/sec")
    return out, errs


def parse_h2load(text):
    out, errs = {}, []
    m = re.search(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s", text)
    if m:
        out["req_s"] = float(m.group(3))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    if m:
        total, started, done, ok, failed, errored, timeout = map(int, m.groups())
        out.update(requests=done, succeeded=ok, failed=failed, errored=errored, timeout=timeout)
        if failed or errored or timeout:
            errs.append("h2load: %d failed, %d errored, %d timeout" % (failed, errored, timeout))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        s2, s3, s4, s5 = map(int, m.groups())
        out["status"] = {"2xx": s2, "3xx": s3, "4xx": s4, "5xx": s5}
        if s4 or s5:
            errs.append("h2load: %d 4xx, %d 5xx" % (s4, s5))
    m = re.search(r"\((\d+)\) data", text)
    if m:
        out["data_bytes"] = int(m.group(1))
    m = re.search(r"Application protocol: (\S+)", text)
    if m:
        out["alpn"] = m.group(1)
    if "req_s" not in out:
        errs.append("h2load printed no req/s")
    return out, errs


def parse_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                pass
    return None


def record(a):
    with open(a.out, encoding="utf-8", errors="replace") as f:
        text = f.read()
    rec = {"test": a.test, "proxy": a.proxy, "round": a.round, "kind": a.kind, "rc": a.rc,
           "wall_s": a.wall, "metrics": {}, "errors": [], "error": None}
    if a.proxy_cpu is not None and a.wall:
        rec["proxy_cpu_s"] = a.proxy_cpu
        rec["cpu_share"] = a.proxy_cpu / a.wall
    if a.cpu0 is not None:
        rec["cpu0_busy"] = a.cpu0
    if a.cpu1 is not None:
        rec["cpu1_busy"] = a.cpu1
    if a.noise is not None:
        rec["other_load_on_proxy_cpu"] = a.noise
    rec["attempts"] = a.attempts
    if a.proxy_alive == "no":
        rec["errors"].append("proxy process was gone after the test (crash?)")
    if a.log_errors:
        rec["errors"].append("proxy log: " + a.log_errors)
    m = rec["metrics"]
    if a.kind in ("wrk", "h2load"):
        parsed, errs = (parse_wrk if a.kind == "wrk" else parse_h2load)(text)
        rec["errors"].extend(errs)
        if "req_s" not in parsed:
            rec["error"] = "failed: %s" % (text.strip().splitlines() or ["no output"])[-1][:200]
        if a.test in ("bulk", "static_large") and "req_s" in parsed:
            m["mb_s"] = parsed["req_s"] * 1048576 / 1e6
            m["req_s"] = parsed["req_s"]
        elif a.test in ("compress_gzip", "compress_br") and "req_s" in parsed:
            m["req_s"] = parsed["req_s"]
            n = parsed.get("succeeded")
            if a.proxy_cpu is not None and n:
                m["cpu_us_per_resp"] = a.proxy_cpu * 1e6 / n
            if n and parsed.get("data_bytes") is not None:
                m["resp_bytes"] = parsed["data_bytes"] / n
                if m["resp_bytes"] > 0.9 * JSON_BYTES:
                    rec["errors"].append("responses were not compressed (%.0f body bytes each)" % m["resp_bytes"])
        elif a.test == "fixed_rate" and "req_s" in parsed:
            m["req_s"] = parsed["req_s"]
            if a.proxy_cpu is not None and parsed.get("succeeded"):
                m["cpu_us_per_req"] = a.proxy_cpu * 1e6 / parsed["succeeded"]
        else:
            for k in ("req_s", "p50_ms", "p99_ms"):
                if k in parsed:
                    m[k] = parsed[k]
        rec["raw"] = {k: v for k, v in parsed.items() if k not in m}
    else:
        j = parse_json(text)
        if j is None:
            rec["error"] = "failed: no JSON from bench-client (rc %s): %s" % (
                a.rc, (text.strip().splitlines() or ["no output"])[-1][:200])
        else:
            rec["raw"] = j
            if not j.get("ok"):
                rec["error"] = j.get("error") or "failed"
                if not str(rec["error"]).startswith("failed"):
                    rec["error"] = "failed: %s" % rec["error"]
            else:
                if a.test in ("tls_full", "tls_resumed"):
                    m["conn_s"] = j["conn_per_s"]
                    want = "resumed_handshakes" if a.test == "tls_resumed" else "full_handshakes"
                    tot = j["full_handshakes"] + j["resumed_handshakes"]
                    if tot and j[want] / tot < 0.95:
                        rec["errors"].append("only %d of %d handshakes were %s" % (
                            j[want], tot, want.split("_")[0]))
                    if j.get("non2xx") or j.get("errors"):
                        rec["errors"].append("%d non-2xx, %d errors (first: %s)" % (
                            j.get("non2xx", 0), j.get("errors", 0), j.get("first_error")))
                elif a.test in ("ws_echo", "ws_echo_h2"):
                    m["msgs_s"] = j["msgs_per_s"]
                    m["p50_ms"] = j["p50_us"] / 1e3
                    m["p99_ms"] = j["p99_us"] / 1e3
                    if j.get("failed") or j.get("conn_errors"):
                        rec["errors"].append("%d handshakes failed, %d connections broke (first: %s)" % (
                            j.get("failed", 0), j.get("conn_errors", 0), j.get("first_error")))
                elif a.test == "ws_idle":
                    m["kb_per_session"] = j["kb_per_session"]
                    m["sessions"] = j["opened"]
                    if j.get("failed"):
                        rec["errors"].append("%d of %d WebSockets failed to open (first: %s)" % (
                            j["failed"], j["failed"] + j["opened"], j.get("first_error")))
                    if j.get("alive", 0) < j.get("sampled", 0):
                        rec["errors"].append("only %d of %d sampled idle WebSockets still echoed" % (
                            j["alive"], j["sampled"]))
                elif a.test == "startup":
                    m["ready_ms"] = j["ready_ms"]
                    m["idle_rss_mb"] = j["rss_kb"] / 1024
                    if j.get("pss_kb"):
                        m["idle_pss_mb"] = j["pss_kb"] / 1024
    if rec["error"] is None and not m:
        rec["error"] = "failed: nothing measured"
    with open(a.jsonl, "a") as f:
        f.write(json.dumps(rec) + "\n")
    status = rec["error"] or ", ".join("%s=%.4g" % (k, v) for k, v in m.items() if isinstance(v, (int, float)))
    share = " cpu=%.0f%%" % (100 * rec["cpu_share"]) if "cpu_share" in rec else ""
    warn = (" WARN: " + "; ".join(rec["errors"])) if rec["errors"] else ""
    print("  %-11s %-8s round %s: %s%s%s" % (a.test, a.proxy, a.round, status, share, warn))


def fmt(v, key=""):
    if v is None:
        return "–"
    if key.endswith("_ms") or key in ("kb_per_session", "idle_rss_mb", "idle_pss_mb", "cpu_us_per_req", "cpu_us_per_resp"):
        return "%.2f" % v if v < 10 else "%.1f" % v if v < 100 else "%.0f" % v
    if abs(v) >= 10000:
        return "%.1fk" % (v / 1000)
    if abs(v) >= 100:
        return "%.0f" % v
    return "%.2f" % v


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(a):
    recs = [json.loads(l) for l in open(a.jsonl) if l.strip()]
    meta = json.load(open(a.meta))
    proxies = meta["proxies"]
    base = "nginx" if "nginx" in proxies else proxies[0]
    tests = [t for t in TESTS if any(r["test"] == t[0] for r in recs)]

    summary = {}
    for tid, title, tool, metrics in tests:
        summary[tid] = {}
        for p in proxies:
            rs = [r for r in recs if r["test"] == tid and r["proxy"] == p]
            good = [r for r in rs if not r.get("error")]
            cell = {"runs": len(rs), "ok_runs": len(good), "errors": sorted({e for r in rs for e in r["errors"]}),
                    "failures": sorted({r["error"] for r in rs if r.get("error")})}
            if rs and not good:
                cell["na"] = "n/a (%s)" % cell["failures"][0]
            shares = [r.get("cpu_share") for r in good]
            cell["cpu_share"] = median(shares)
            cell["cpu0_busy"] = median([r.get("cpu0_busy") for r in good])
            cell["cpu1_busy"] = median([r.get("cpu1_busy") for r in good])
            cell["other_load"] = median([r.get("other_load_on_proxy_cpu") for r in good])
            cell["repeated_runs"] = sum(r.get("attempts", 1) - 1 for r in rs)
            for key, label, better, per_core in metrics:
                vals = [r["metrics"].get(key) for r in good]
                vals = [v for v in vals if v is not None]
                cell[key] = median(vals)
                cell[key + "_all"] = vals
                if per_core:
                    pc = [r["metrics"][key] / r["cpu_share"] for r in good
                          if r["metrics"].get(key) is not None and r.get("cpu_share", 0) > 0.02]
                    cell[key + "_per_core"] = median(pc)
                    cell[key + "_per_core_all"] = pc
            summary[tid][p] = cell

    def ratio(tid, key, p, suffix=""):
        b = summary[tid].get(base, {}).get(key + suffix)
        v = summary[tid].get(p, {}).get(key + suffix)
        return v / b if (b and v is not None) else None

    def spread(vals):
        if len(vals) < 2:
            return ""
        med = statistics.median(vals)
        return " ±%.0f%%" % (50 * (max(vals) - min(vals)) / med) if med else ""

    others = [p for p in proxies if p != base]
    L = []
    L.append("# ferry benchmark — %s" % meta["date"])
    L.append("")
    L.append("ferry commit `%s`%s. %s" % (meta["ferry_commit"], " (work tree had uncommitted changes)" if meta.get("ferry_dirty") else "", meta.get("note", "")))
    L.append("")
    L.append("Machine: %s × %s, kernel %s, load average at start %s / at end %s." % (
        meta["nproc"], meta["cpu_model"], meta["kernel"], meta.get("loadavg_start", "?"), meta.get("loadavg_end", "?")))
    L.append("Versions: " + "; ".join("%s: %s" % (k, v) for k, v in meta["versions"].items()) + ".")
    L.append("Parameters: %s rounds, %s s per test (after %s s warm-up), %s idle WebSockets, fixed rate %s req/s; proxy on CPU %s with one worker, load generator and upstream on CPU %s. Medians over rounds; ±x%% is half the min–max range over rounds." % (
        meta["rounds"], meta["duration"], meta["warmup"], meta["idle_sockets"], meta["fixed_rps"], meta["proxy_cpu"], meta["load_cpu"]))
    L.append("")
    L.append("## Medians")
    L.append("")
    hdr = "| test | metric | " + " | ".join(proxies) + " | " + " | ".join("%s / %s" % (p, base) for p in others) + " |"
    L.append(hdr)
    L.append("|" + "---|" * (2 + len(proxies) + len(others)))
    for tid, title, tool, metrics in tests:
        for i, (key, label, better, per_core) in enumerate(metrics):
            row = ["%s — `%s`" % (title, tool) if i == 0 else "", label]
            for p in proxies:
                c = summary[tid][p]
                if "na" in c:
                    row.append(c["na"])
                elif c.get(key) is None:
                    row.append("–")
                else:
                    row.append(fmt(c[key], key) + spread(c[key + "_all"]) + (" ⚠" if c["errors"] else ""))
            for p in others:
                r = ratio(tid, key, p)
                row.append("%.2f×" % r if r is not None else "–")
            L.append("| " + " | ".join(row) + " |")
    if any(summary[t][p]["errors"] for t in summary for p in proxies):
        L.append("")
        L.append("⚠: some run of that cell reported errors; see [Errors and warnings](#errors-and-warnings).")
    L.append("")
    L.append("## Per proxy core")
    L.append("")
    L.append("The value divided by the proxy's CPU share (its utime+stime over the run's wall time, from `/proc/PID/stat`; 100 %% = the whole of CPU %s). The last column is how busy CPU %s, the load generator's and upstream's core, was: near 100 %% it, not the proxy, was the limit, and the per-core figure is the fair comparison." % (meta["proxy_cpu"], meta["load_cpu"]))
    L.append("")
    L.append("| test | metric | " + " | ".join("%s per core (CPU share)" % p for p in proxies) + " | " + " | ".join("%s / %s" % (p, base) for p in others) + " | load-generator CPU busy (%s) | other processes on the proxy's CPU |" % " / ".join(proxies))
    L.append("|" + "---|" * (4 + len(proxies) + len(others)))
    for tid, title, tool, metrics in tests:
        for key, label, better, per_core in metrics:
            if not per_core:
                continue
            row = [title, label]
            busy, other = [], []
            for p in proxies:
                c = summary[tid][p]
                if "na" in c or c.get(key + "_per_core") is None:
                    row.append(c.get("na", "–"))
                    continue
                row.append("%s (%.0f%%)" % (fmt(c[key + "_per_core"], key), 100 * c["cpu_share"]))
                if c.get("cpu0_busy") is not None:
                    busy.append("%.0f%%" % (100 * c["cpu0_busy"]))
                if c.get("other_load") is not None:
                    other.append("%.0f%%" % (100 * c["other_load"]))
            for p in others:
                r = ratio(tid, key, p, "_per_core")
                row.append("%.2f×" % r if r is not None else "–")
            row.append(" / ".join(busy))
            row.append(" / ".join(other))
            L.append("| " + " | ".join(row) + " |")
    rep = sum(summary[t][p].get("repeated_runs", 0) for t in summary for p in proxies)
    L.append("")
    L.append("Measurements repeated because other processes took more than %s of the proxy's CPU: %d." % (meta.get("noise_max", "?"), rep))
    if "fixed_rate" in summary:
        L.append("")
        L.append("CPU per request at the fixed offered rate (test 8) needs no normalisation: " + ", ".join(
            "%s %s µs" % (p, fmt(summary["fixed_rate"][p].get("cpu_us_per_req"), "cpu_us_per_req")) for p in proxies) + ".")
    if "compress_gzip" in summary or "compress_br" in summary:
        lv = "nginx at gzip_comp_level %s" % meta.get("nginx_gzip_level", "?")
        if meta.get("nginx_brotli_level") is not None:
            lv += " and brotli_comp_level %s" % meta["nginx_brotli_level"]
        else:
            lv += " (no brotli module)"
        L.append("")
        L.append("Compression (tests 10a and 10b): %s req/s offered on 4 connections; %s; HAProxy with libslz (gzip, no levels); ferry at its built-in levels. The CPU per response needs no normalisation." % (
            meta.get("compress_rps", "?"), lv))

    if "ferry" in proxies and any(t[0] in summary for t in TARGETS):
        L.append("")
        L.append("## ferry against the targets of issue 7")
        L.append("")
        L.append("| target | ferry | best peer here | met? |")
        L.append("|---|---|---|---|")
        for tid, key, per_core, op, val, text in TARGETS:
            if tid not in summary:
                continue
            c = summary[tid]["ferry"]
            k = key + ("_per_core" if per_core else "")
            v = None if "na" in c else c.get(k)
            better = next(m[2] for m in TEST_INDEX[tid][3] if m[0] == key)
            peers = [summary[tid][p].get(k) for p in proxies if p != "ferry" and "na" not in summary[tid][p]]
            peers = [x for x in peers if x is not None]
            best = (max(peers) if better == "higher" else min(peers)) if peers else None
            if v is None:
                met = c.get("na", "not measured")
            elif op == ">=":
                met = "yes" if v >= val else "no (%.0f%% of target)" % (100 * v / val)
            elif op == "<=":
                met = "yes" if v <= val else "no (%.1f× the target)" % (v / val)
            elif op == "<":
                met = "yes" if v < val else "no (%.1f× the target)" % (v / val)
            else:  # <= best peer
                met = "–" if best is None else ("yes" if v <= best else "no (%.2f× the best peer)" % (v / best))
            L.append("| (%s) %s | %s | %s | %s |" % (TEST_INDEX[tid][1].split(")")[0].strip("("), text, fmt(v, key), fmt(best, key), met))

    rows14 = [t for t in TARGETS_14 if t[0] in summary]
    if "ferry" in proxies and base == "nginx" and rows14:
        L.append("")
        L.append("## ferry against the targets of issue 14")
        L.append("")
        L.append("| target | ferry per core | nginx per core | ratio | met? |")
        L.append("|---|---|---|---|---|")
        for tid, key, want, text in rows14:
            c, n = summary[tid]["ferry"], summary[tid]["nginx"]
            v, b = c.get(key + "_per_core"), n.get(key + "_per_core")
            r = ratio(tid, key, "ferry", "_per_core")
            if r is None:
                met = c.get("na") or n.get("na") or "not measured"
            else:
                met = "yes" if r >= want else "no"
                if c["errors"] or n["errors"]:
                    met += " (⚠ some run reported errors)"
            L.append("| (%s) %s | %s | %s | %s | %s |" % (TEST_INDEX[tid][1].split(")")[0].strip("("), text,
                     fmt(v, key), fmt(b, key), "%.2f×" % r if r is not None else "–", met))

    L.append("")
    L.append("## Errors and warnings")
    L.append("")
    any_err = False
    for tid, title, tool, metrics in tests:
        for p in proxies:
            c = summary[tid][p]
            for e in c["failures"] + c["errors"]:
                any_err = True
                L.append("- %s, %s: %s" % (title, p, e))
    if not any_err:
        L.append("None: every run answered 2xx, no socket errors, no proxy crashed or logged warnings.")
    L.append("")

    with open(a.out + ".md", "w") as f:
        f.write("\n".join(L))
    with open(a.out + ".json", "w") as f:
        json.dump({"meta": meta, "summary": summary, "records": recs}, f, indent=1)
    print("\n".join(L))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--jsonl", required=True)
    r.add_argument("--test", required=True)
    r.add_argument("--proxy", required=True)
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--kind", required=True, choices=["wrk", "h2load", "json"])
    r.add_argument("--out", required=True)
    r.add_argument("--rc", type=int, default=0)
    r.add_argument("--wall", type=float)
    r.add_argument("--proxy-cpu", type=float)
    r.add_argument("--cpu0", type=float)
    r.add_argument("--cpu1", type=float)
    r.add_argument("--noise", type=float)
    r.add_argument("--attempts", type=int, default=1)
    r.add_argument("--proxy-alive", default="yes")
    r.add_argument("--log-errors", default="")
    s = sub.add_parser("summarize")
    s.add_argument("--jsonl", required=True)
    s.add_argument("--meta", required=True)
    s.add_argument("--out", required=True)
    a = ap.parse_args()
    record(a) if a.cmd == "record" else summarize(a)


if __name__ == "__main__":
    sys.exit(main())
