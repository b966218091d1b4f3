"""Framework adapters for valkey-sessions (docs/adapters.md).

* ``valkey_sessions.django``: a Django session engine, ``SESSION_ENGINE = "valkey_sessions.django"``.
* ``valkey_sessions.merge``: the three-way merge the adapters apply on a version conflict.
"""
