"""Record and replay of HTTP traffic on vcrpy: paths, loading, matching, scrubbing (with the
session's secrets, :mod:`pytest_llmops.secrets`) and replay without sleeping. Nothing here
imports vcrpy at module load except ``recorder`` (imported lazily by the fixtures).

PYTEST_DONT_REWRITE: loaded at start-up (see :mod:`pytest_llmops.plugin`)."""
