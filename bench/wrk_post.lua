-- wrk script for bench_ingest: POST one signed delivery body (path, body and signature come from the env).
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.body = io.open(os.getenv("BENCH_BODY_FILE"), "rb"):read("*a")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Hub-Signature-256"] = os.getenv("BENCH_SIGNATURE")

done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.3f %.3f %.3f %.3f %d\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout))
end
