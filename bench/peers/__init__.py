"""The peer benchmark: inferpipe beside DBOS Transact (`python -m bench.peers`)."""
