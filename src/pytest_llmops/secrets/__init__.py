"""Secrets never reach disk: what is secret in a session (:mod:`.known`, :mod:`.rules`,
:mod:`.identities`), scrubbing it out of structured content (:mod:`.bodies`) and out of what
the plugin writes to MLflow and reports (:mod:`.records`), and the scanner (:mod:`.scan`).

Cassettes are scrubbed by :mod:`pytest_llmops.cassettes.sanitize` with the same known values.
Nothing here imports anything heavy.
"""
