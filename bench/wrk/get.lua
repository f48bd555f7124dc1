-- GET /v1/merchants/{id} (the id in NT_MERCHANT).
request = function()
  return wrk.format("GET", "/v1/merchants/" .. os.getenv("NT_MERCHANT"), {["Authorization"] = os.getenv("NT_AUTH")})
end

done = function(summary, latency, requests)
  io.write(string.format("non-2xx or errors: %d\n", summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
