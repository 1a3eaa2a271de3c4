"""The replay seal: in replay, nothing reaches a host that is not loopback or allowed.

:mod:`.policy` decides what is allowed (loopback, the hosts named with
``--llmops-allow-host``/``llmops_allowed_hosts``, the tracking server) and says why not;
:mod:`.sockets` enforces it on every socket path of this process (connect, datagrams, name
lookups) and :mod:`.proxy` on requests sent through a proxy. Child processes are not covered.

PYTEST_DONT_REWRITE: loaded at start-up (see :mod:`pytest_llmops.plugin`)."""
