"""Layer 4 of the ADR, built on the lifecycle hooks: the execution monitor (`monitor`), the
optimizer (`optimizer`), the hash-chained audit log (`audit`) and access policies with
approvals (`policy`). Each is a hook object an agent or a runtime carries; see
docs/production.md."""
