-- POST /v1/merchants with a fresh external_id per request (wrk; one counter per thread).
local counter = 0
local threads = 0

setup = function(thread)
  threads = threads + 1
  thread:set("tag", tostring(threads) .. "-" .. tostring(os.time()))
end

request = function()
  counter = counter + 1
  local body = '{"external_id":"bench-' .. tag .. '-' .. counter .. '","name":"Bench GmbH","legal_form":"10001",' ..
    '"registration_number":"HRB 12345","address":{"street":"Hauptstr.","house_number":"1","postal_code":"10115",' ..
    '"city":"Berlin","country":"DE"},"contact":{"name":"Bench","email":"bench@example.com"}}'
  return wrk.format("POST", "/v1/merchants", {["Content-Type"] = "application/json",
    ["Authorization"] = os.getenv("NT_AUTH")}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("non-2xx or errors: %d\n", summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
