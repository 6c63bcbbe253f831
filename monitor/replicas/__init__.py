"""Replicas: daemons sharing one PostgreSQL store split the targets and dossier sources among themselves.

`membership.py` keeps the live members in the database, `rendezvous.py` decides who owns what,
`leader.py` elects the one member that exports figures derived from the shared tables, and `node.py`
runs the three together for the daemon. With SQLite (one process) none of it runs: that process is the
only member, owns everything and leads (`node.SoloReplica`).
"""
