"""User identities in traffic (e-mail addresses, Entra object ids) and their stable
placeholders.

Real services name the user who did something: ARM's ``systemData.createdBy`` (an e-mail),
a Databricks workspace's ``createdBy``/``updatedBy`` (``oid``, ``puid``, ``applicationId``),
SCIM's ``userName`` and ``emails``, a cluster's ``single_user_name`` and
``creator_user_name``. Each value becomes a placeholder derived from the value alone, so the
same user gets the same placeholder in every cassette and every session, and a replayed
request that carries it still matches.
"""

from __future__ import annotations

import hashlib
import re

IDENTITY_FIELDS = frozenset(
    {
        "createdby",
        "lastmodifiedby",
        "updatedby",
        "username",
        "user_name",
        "single_user_name",
        "creator_user_name",
        "owner_user_name",
        "run_as_user_name",
        "oid",
        "puid",
        "applicationid",
    }
)
"""JSON fields (any depth, any case) whose string value is a user's identity."""
IDENTITY_LISTS = frozenset({"emails"})
"""JSON fields holding a list of ``{"value": <e-mail>}`` entries (SCIM)."""

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
PLACEHOLDER_DOMAIN = re.compile(
    r"(?i:(?:[A-Za-z0-9-]+\.)*(?:example\.(?:com|org|net)|test\.com|test|invalid|example|localhost))"
)
"""E-mail domains that are placeholders already: the reserved ones (RFC 2606) and the
``test.com`` of documentation and recorded examples."""
PLACEHOLDER_GUID_PREFIX = "00000000-0000-0000-0000-"


def is_identity(value: str) -> bool:
    """Whether ``value`` is shaped like a user's identity (an e-mail address, an object id, a
    ``puid``). Identity fields also hold names that are not (``createdBy: Microsoft`` on a
    model deployment, a ``CreatedBy`` tag naming a tool): those are left as they are."""
    value = value.strip()
    return bool(EMAIL.fullmatch(value) or _GUID.fullmatch(value) or _HEX16.fullmatch(value))


def is_placeholder(value: str) -> bool:
    """Whether ``value`` needs no placeholder (one already, or an example)."""
    lowered = value.lower()
    if "@" in lowered:
        return PLACEHOLDER_DOMAIN.fullmatch(lowered.rsplit("@", 1)[1]) is not None
    if len(set(lowered.split("-", 1)[0])) == 1:
        return True  # example ids, as in Azure's own examples: 22222222-2222-..., 33333333
    return lowered.startswith((PLACEHOLDER_GUID_PREFIX, "user-", "<"))


def placeholder(value: str) -> str:
    """The stable placeholder of an identity: the same for the same user, shaped like it
    (an e-mail stays an e-mail, an object id a GUID)."""
    digest = hashlib.sha256(f"pytest-llmops identity:{value.strip().lower()}".encode()).hexdigest()
    if EMAIL.fullmatch(value):
        return f"user-{digest[:8]}@example.com"
    if _GUID.fullmatch(value):
        return PLACEHOLDER_GUID_PREFIX + digest[:12]
    if _HEX16.fullmatch(value):
        return "0000" + digest[:12].upper()
    return f"user-{digest[:8]}"


def is_identity_field(key: str) -> bool:
    """Whether a JSON field holds an identity."""
    return key.lower() in IDENTITY_FIELDS
