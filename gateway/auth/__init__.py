"""Authentication and access control at the edge.

`identity.py` asks the identification URL (cached, single-flight), `oidc.py` verifies bearer
JWTs against a JWKS, `apikeys.py` checks service keys by hash, `policy.py` combines them and
decides read/write/collection access, `middleware.py` applies that to every request.
"""
