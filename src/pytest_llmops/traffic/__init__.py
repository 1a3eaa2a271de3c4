"""The Azure OpenAI client's traffic: pacing within the deployment's rate limit, and faults
injected as the real service fails.

- Pacing (live and record runs stay within the deployment's limits, xdist workers included):
  :mod:`.options` (the ini options), :mod:`.estimate` (what a request will cost),
  :mod:`.headers` (what the service's answers say), :mod:`.shared_file` and :mod:`.ledger`
  (the sliding window every process shares), :mod:`.limiter` (one deployment's limit),
  :mod:`.pacer` (this process's limiters), :mod:`.paced_transport` (the transport that
  waits, reconciles and sends a 429 again), :mod:`.clients` (what the plugin's clients
  get), :mod:`.own_clients` (every other ``httpx``/``httpx2`` client's Azure OpenAI
  requests, in live and record runs), :mod:`.summary` (the terminal summary).
- Fault injection: :mod:`.faults` and the ``llmops_faults`` fixture in
  :mod:`pytest_llmops.fixtures.traffic`.
- :mod:`.wrapping`: what every transport wrapper here shares.

Nothing here imports httpx, httpx2, respx or openai at module level: they are imported
when a client is instrumented or a fault is served.
"""
